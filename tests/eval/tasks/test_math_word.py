"""Procedural word problems: answers checked independently, oracle = 100%, extraction."""

from __future__ import annotations

import ast
import operator
import re

import pytest

from youtu.eval.tasks.math_word import (EVAL_SEED, SHOT_SEED, extract_integer, few_shot_prefix,
                                        make_problem, run_math_word)

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def _arith(node):
    if isinstance(node, ast.Constant):
        return node.value
    return _OPS[type(node.op)](_arith(node.left), _arith(node.right))


def test_solutions_evaluate_to_the_answer():
    for seed in range(EVAL_SEED, EVAL_SEED + 300):
        p = make_problem(seed)
        lhs, rhs = p.solution.rstrip(".").split(" = ")
        assert _arith(ast.parse(lhs, mode="eval").body) == p.answer == int(rhs), p
        assert p.answer >= 0


def test_deterministic_and_varied():
    assert make_problem(EVAL_SEED + 5) == make_problem(EVAL_SEED + 5)
    questions = {re.sub(r"\d+", "#", make_problem(EVAL_SEED + i).question.split(".")[0])
                 for i in range(100)}
    assert len(questions) > 6
    assert few_shot_prefix(2).count("Question:") == 2
    assert make_problem(SHOT_SEED).question in few_shot_prefix(1)


@pytest.mark.parametrize("text, value", [(" 28", 28), (" 23 + 12 - 7 = 28. The answer is 28.", 28),
                                          (" 1,200 dollars", 1200), (" -3", -3),
                                          (" none\n42", None), ("", None)])
def test_extract_integer(text, value):
    assert extract_integer(text) == value


def test_oracle_scores_100_and_wrong_scores_0(scripted_lm):
    answers = {make_problem(EVAL_SEED + i).question: make_problem(EVAL_SEED + i).answer
               for i in range(20)}

    def oracle(prompt):
        question = prompt.rsplit("Question: ", 1)[1].split("\nAnswer:")[0]
        return f" The answer is {answers[question]}."

    assert run_math_word(scripted_lm(oracle), n=20)["score"] == 1.0
    res = run_math_word(scripted_lm(lambda p: " -1"), n=20)
    assert res["score"] == 0.0 and res["n"] == 20 and len(res["rows"]) == 20
