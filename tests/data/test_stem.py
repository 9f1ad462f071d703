"""Generated worked problems: every kind parses back and its answer checks out independently."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from youtu.data.stem import GENERATORS, generate_problem, worksheet


def _num(s: str) -> Fraction:
    return Fraction(s.replace(" ", ""))


def _check(p) -> None:
    """Re-derive each answer from the question text alone (not from the generator's numbers)."""
    q, a = p.question, p.answer
    if p.kind == "arithmetic":
        expr = re.fullmatch(r"Compute (.*)\.", q).group(1)
        assert Fraction(eval(expr.replace("/", "*Fraction(1)/"))) == _num(a)  # noqa: S307
    elif p.kind == "linear_equation":
        lhs, rhs = re.fullmatch(r"Solve for x: (.*) = (-?\d+)\.", q).groups()
        x = _num(a.removeprefix("x = "))
        assert eval(re.sub(r"(\d)x", r"\1*x", lhs).replace("x", f"({x})")) == int(rhs)  # noqa: S307
    elif p.kind == "quadratic":
        poly = re.fullmatch(r"Solve (.*) = 0\.", q).group(1).replace("^", "**")
        for root in re.findall(r"x = (-?\d+)", a):
            assert eval(re.sub(r"(\d)x", r"\1*x", poly).replace("x", f"({root})")) == 0  # noqa: S307
    elif p.kind == "fractions":
        expr = re.fullmatch(r"Compute (.*)\.", q).group(1)
        assert eval(re.sub(r"(\d+)/(\d+)", r"Fraction(\1, \2)", expr)) == _num(a)  # noqa: S307
    elif p.kind == "gcd":
        import math

        x, y = map(int, re.findall(r"\d+", q))
        assert math.gcd(x, y) == int(a)
    elif p.kind == "prime_factors":
        import math

        n = int(re.search(r"Write (\d+)", q).group(1))
        assert math.prod(int(f) for f in a.split(" * ")) == n
    elif p.kind == "series":
        n, first, diff = map(int, re.findall(r"-?\d+", q))
        assert sum(first + k * diff for k in range(n)) == int(a)
    elif p.kind == "linear_system":
        x, y = (_num(v) for v in re.findall(r"[xy] = (-?[\d/]+)", a))
        for eq in re.findall(r"(?:system |and )(.*?) = (-?\d+)", q):
            lhs = re.sub(r"(\d)([xy])", r"\1*\2", eq[0]).replace("x", f"({x})").replace("y", f"({y})")
            assert eval(lhs) == int(eq[1])  # noqa: S307
    elif p.kind == "expand":
        f1, f2 = re.findall(r"\(([^)]*)\)", q)
        poly = a.replace("^", "**")
        for t in (-3, 2, 5):
            def ev(e: str) -> int:
                return eval(re.sub(r"(\d)x", r"\1*x", e).replace("x", f"({t})"))  # noqa: S307
            assert ev(f1) * ev(f2) == ev(poly)
    elif p.kind == "percentage":
        price, pct = map(int, re.findall(r"\d+", q))
        sign = 1 if "increases" in q else -1
        assert price * (100 + sign * pct) / 100 == float(_num(a.removesuffix(" dollars")))
    elif p.kind == "rate":
        speed, hours, extra = map(int, re.findall(r"\d+", q))
        assert speed * hours + extra == int(a.removesuffix(" km"))
    else:
        pytest.fail(f"no independent check for kind {p.kind}")


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_every_kind_answers_check_out(kind):
    rng = random.Random(kind)
    for _ in range(40):
        _check(GENERATORS[kind](rng))


def test_deterministic_per_seed_and_worksheet_text():
    a = [generate_problem(random.Random(5)).text for _ in range(3)]
    assert a == [generate_problem(random.Random(5)).text for _ in range(3)]
    text, problems = worksheet(random.Random(0), 4)
    assert len(problems) == 4 and text.count("Answer:") == 4
    assert all(p.answer in text for p in problems)
