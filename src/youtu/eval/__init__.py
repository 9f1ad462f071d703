"""youtu.eval"""
