"""youtu.tokenizer"""
