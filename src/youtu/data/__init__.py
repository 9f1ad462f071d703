"""youtu.data"""
