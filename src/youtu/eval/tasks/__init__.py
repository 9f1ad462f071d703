"""Evaluation tasks (agentic cloze, bits per byte, math word problems, HumanEval, function
calling, needle in a haystack) and the shipped APTBench task table (`aptbench.toml`)."""
