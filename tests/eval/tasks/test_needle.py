"""Needle in a haystack: haystack sizes and depths, oracle retrieval = 100%."""

from __future__ import annotations

import re

import pytest

from youtu.eval.harness import CheckpointLM
from youtu.eval.tasks.needle import build_haystack, run_needle


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    return CheckpointLM(tiny_checkpoint)


def test_haystack_fills_the_length_with_the_needle_at_its_depth(lm):
    for n in (128, 512):
        for depth in (0.0, 0.5, 1.0):
            prompt, code = build_haystack(lm, n, depth, seed=7)
            size = len(lm.encode(prompt))
            assert 0.8 * n <= size <= n, (n, size)
            if n == 512:  # enough sentences to place the needle precisely
                body = prompt.rsplit("\n\nQuestion:", 1)[0]
                start, end = body.index("The secret code"), body.index(f"is {code}.")
                assert abs(start / (len(body) - (end - start)) - depth) < 0.1
    assert build_haystack(lm, 256, 0.5, 3) == build_haystack(lm, 256, 0.5, 3)


def test_oracle_finds_every_needle_and_a_constant_none(lm, scripted_lm):
    def oracle(prompt):
        city = prompt.rsplit("secret code of ", 1)[1].split(" is")[0]
        return " " + re.search(rf"secret code of {city} is (\d+)\.", prompt).group(1) + "."

    class Oracle(scripted_lm):
        def truncate(self, text, max_tokens):
            return lm.truncate(text, max_tokens)

    res = run_needle(Oracle(oracle), max_tokens=512, depths=(0.0, 0.5, 1.0))
    assert res["score"] == 1.0 and len(res["grid"]) == 9 and res["lengths"][-1] <= 512
    assert run_needle(Oracle(lambda p: " 1234."), max_tokens=512, depths=(0.5,))["score"] == 0.0


def test_tiny_model_runs_and_bad_lengths_are_refused(lm):
    res = run_needle(lm, max_tokens=256, lengths=[128], depths=(0.5,))
    assert set(res["grid"]) == {"128@0.50"} and res["code_logprob"] < 0
    with pytest.raises(ValueError, match="needle lengths must lie in"):
        run_needle(lm, max_tokens=256, lengths=[1000])
