"""youtu.train"""
