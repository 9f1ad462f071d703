"""youtu.agentic"""
