"""youtu.serve"""
