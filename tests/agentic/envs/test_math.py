"""Math environment: every family's checker accepts the exact answer in equivalent forms and
rejects near-misses (judged against exact arithmetic done without sympy); the calculator is
exact and refuses unsafe or explosive input."""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pytest

from youtu.agentic.envs.math import FAMILIES, MathEnv, calculate, parse_exact
from youtu.agentic.trajectory import Task

ENV = MathEnv()


def _one_task_per_family() -> dict[str, object]:
    found = {}
    wanted = sum(len(f) for f in FAMILIES.values())
    for seed in range(400):
        for level in FAMILIES:
            task = ENV.generate(seed, level)
            found.setdefault(task.meta["family"], task)
        if len(found) == wanted:
            return found
    raise AssertionError(f"only found families {sorted(found)}")


TASKS = _one_task_per_family()


def _value(text: str, kind: str) -> Fraction | frozenset | tuple:
    """An answer's exact value by Fraction arithmetic, independent of sympy and the checker
    (every family's answers and wrong answers are integers, fractions or decimals)."""
    parts = [Fraction(p) for p in text.strip().strip("{}()").split(",")]
    return parts[0] if kind == "number" else frozenset(parts) if kind == "set" else tuple(parts)


@pytest.mark.parametrize("family", sorted(TASKS))
def test_checker_accepts_the_answer_and_rejects_near_misses(family):
    task = TASKS[family]
    kind, want = task.meta["kind"], _value(task.answer, task.meta["kind"])
    assert ENV.check(task, task.answer).correct
    assert task.near_misses, "every problem needs plausible wrong answers"
    for wrong in task.near_misses:  # really wrong (generate() keeps what the checker rejects)
        assert _value(wrong, kind) != want, (task.prompt, wrong)
        assert not ENV.check(task, wrong).correct, (task.prompt, wrong)
    if task.meta["mistake"]:
        assert _value(task.meta["mistake"]["wrong"], kind) != want
        assert not ENV.check(task, task.meta["mistake"]["wrong"]).correct
    # the gold steps really compute what they claim, and verification gives 0 for the answer
    for step in task.steps:
        assert calculate(step.arguments["expression"]) == step.result
    assert all(calculate(e) == "0" for e in ENV.verification_calls(task, task.answer))


@pytest.mark.parametrize("family", [f for fams in FAMILIES.values() for f in fams],
                         ids=lambda f: f.__name__.strip("_"))
def test_checker_agrees_with_exact_arithmetic_on_unfiltered_wrong_answers(family):
    """The near-misses and mistakes each family proposes, before generate() drops those the
    checker accepts: the checker accepts exactly the ones equal to the answer."""
    wrong_ones = 0
    for k in range(12):
        prob = family(random.Random(k))
        task = Task(id=f"raw-{k}", env="math", seed=k, difficulty=1, prompt=prob.prompt,
                    answer=prob.answer, meta={"kind": prob.kind})
        want = _value(prob.answer, prob.kind)
        for cand in prob.near + ([prob.mistake["wrong"]] if prob.mistake else []):
            same = _value(cand, prob.kind) == want
            assert ENV.check(task, cand).correct == same, (prob.prompt, cand)
            wrong_ones += not same
    assert wrong_ones >= 12, "a family must propose really wrong answers"


def test_generation_is_deterministic_and_levels_map_to_abilities():
    assert ENV.generate(5, 2) == ENV.generate(5, 2)
    assert ENV.generate(5, 2) != ENV.generate(6, 2)
    abilities = {ENV.generate(s, d).meta["ability"] for s in range(5) for d in (1, 2, 3)}
    assert abilities == {"basic_computation", "complex_reasoning", "metacognition"}
    with pytest.raises(ValueError, match="difficulty"):
        ENV.generate(0, 4)


def test_equivalent_forms_are_accepted_and_decimals_are_exact():
    half = ENV.generate(0, 1)
    half.answer, half.meta["kind"] = "1/2", "number"
    for ok in ("1/2", "0.5", "2/4", "x = 1/2", "\\frac{1}{2}", "$1/2$"):
        assert ENV.check(half, ok).correct, ok
    third = ENV.generate(0, 1)
    third.answer = "1/3"
    for bad in ("0.333", "0.3333333", "1/3 + 0.0001", "one third", ""):
        assert not ENV.check(third, bad).correct, bad
    roots = ENV.generate(0, 1)
    roots.answer, roots.meta["kind"] = "{-2, 5}", "set"
    assert ENV.check(roots, "{5, -2}").correct and ENV.check(roots, "x = 5 or x = -2").correct
    assert not ENV.check(roots, "{5}").correct and not ENV.check(roots, "{5, -2, 1}").correct
    pair = ENV.generate(0, 1)
    pair.answer, pair.meta["kind"] = "(3, -1)", "tuple"
    assert ENV.check(pair, "(3, -1)").correct and not ENV.check(pair, "(-1, 3)").correct


@pytest.mark.parametrize("bad", ["__import__('os').system('true')", "x.evalf()", "open('f')",
                                 "[0] * 10**9", "lambda: 1", "9^9^9", "2**100000",
                                 "factorial(100000)", "factorial((99999))", "1" * 400])
def test_unsafe_or_explosive_input_is_refused_fast(bad):
    start = time.perf_counter()
    assert calculate(bad).startswith("error:")
    with pytest.raises(ValueError):
        parse_exact(bad)
    assert time.perf_counter() - start < 1.0


def test_calculator_is_exact():
    assert calculate("1/3 + 1/6") == "1/2"
    assert calculate("sqrt(8)") == "2*sqrt(2)"
    assert calculate("Mod(7^5, 13)") == str(7**5 % 13)
    assert calculate("1/0") == "error: division by zero"
    assert ENV.call_tool(TASKS["gcd_lcm"], {}, "search", {}).startswith("error: unknown tool")
