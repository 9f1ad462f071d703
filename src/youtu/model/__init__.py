"""youtu.model"""
