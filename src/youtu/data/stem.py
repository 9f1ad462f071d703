"""Procedurally generated worked arithmetic/algebra problems with verified answers (domain stem).

    from youtu.data.stem import generate_problem, worksheet
    p = generate_problem(random.Random(0))
    print(p.text)

Each generator builds a question, a step-by-step solution and the answer, then checks the answer
by an independent route (substitution into the original equation, `fractions.Fraction`
arithmetic, `math.gcd`, brute-force summation, evaluating both sides at several points). A
problem whose check fails raises `AssertionError`: a generator bug, never a silent wrong answer.
Everything is deterministic in the `random.Random` passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Problem:
    """A worked problem: `text` = question + solution + answer line, `answer` alone."""

    kind: str
    question: str
    solution: str
    answer: str

    @property
    def text(self) -> str:
        return f"Problem: {self.question}\nSolution: {self.solution}\nAnswer: {self.answer}"


def _signed(v: int | Fraction, first: bool = False) -> str:
    """`+ 3` / `- 3` for a term after the first, `-3` / `3` for the first."""
    if first:
        return str(v)
    return f"- {-v}" if v < 0 else f"+ {v}"


def _term(a: int, var: str, first: bool) -> str:
    """`3x`, `-x`, `+ 3x`, `- x` (coefficient 1 written as the bare variable)."""
    mag = var if abs(a) == 1 else f"{abs(a)}{var}"
    if first:
        return f"-{mag}" if a < 0 else mag
    return f"- {mag}" if a < 0 else f"+ {mag}"


def _linear(a: int, b: int, var: str = "x") -> str:
    head = _term(a, var, first=True)
    return head if b == 0 else f"{head} {_signed(b)}"


def arithmetic(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 30)
    op1, op2 = rng.choice("+-"), rng.choice("*/")
    if op2 == "/":
        b = c * rng.randint(2, 20)  # keep the division exact
    inner = b * c if op2 == "*" else b // c
    total = a + inner if op1 == "+" else a - inner
    expr = f"{a} {op1} {b} {op2} {c}"
    sym = "*" if op2 == "*" else "/"
    solution = (f"Multiplication and division come before addition and subtraction. "
                f"First {b} {sym} {c} = {inner}. Then {a} {op1} {inner} = {total}.")
    assert Fraction(total) == eval(expr.replace("/", "*Fraction(1)/"))  # noqa: S307 (our digits)
    return Problem("arithmetic", f"Compute {expr}.", solution, str(total))


def linear_equation(rng: random.Random) -> Problem:
    a = rng.choice([i for i in range(-12, 13) if i not in (0, 1)])
    x = rng.randint(-20, 20)
    b = rng.randint(-50, 50)
    c = a * x + b
    steps = []
    if b:
        steps.append(f"{'Subtract' if b > 0 else 'Add'} {abs(b)} {'from' if b > 0 else 'to'} "
                     f"both sides: {a}x = {c - b}.")
    steps.append(f"Divide both sides by {a}: x = {Fraction(c - b, a)}.")
    sol = Fraction(c - b, a)
    assert a * sol + b == c
    steps.append(f"Check: {a} * ({sol}) {_signed(b)} = {c}.")
    return Problem("linear_equation", f"Solve for x: {_linear(a, b)} = {c}.", " ".join(steps),
                   f"x = {sol}")


def linear_system(rng: random.Random) -> Problem:
    x, y = rng.randint(-10, 10), rng.randint(-10, 10)
    while True:
        a1, b1, a2, b2 = (rng.randint(-6, 6) for _ in range(4))
        det = a1 * b2 - a2 * b1
        if det and a1 and b1 and a2 and b2:
            break
    c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y
    eq1 = f"{_term(a1, 'x', True)} {_term(b1, 'y', False)} = {c1}"
    eq2 = f"{_term(a2, 'x', True)} {_term(b2, 'y', False)} = {c2}"
    # Elimination of y: multiply the first by b2 and the second by b1, then subtract.
    lhs, rhs = a1 * b2 - a2 * b1, c1 * b2 - c2 * b1
    xs = Fraction(rhs, lhs)
    ys = Fraction(c1 - a1 * xs, b1)
    assert a1 * xs + b1 * ys == c1 and a2 * xs + b2 * ys == c2
    solution = (f"Multiply the first equation by {b2} and the second by {b1}, then subtract to "
                f"eliminate y: {lhs}x = {rhs}, so x = {xs}. Substitute into the first equation: "
                f"{_term(b1, 'y', True)} = {c1} - ({a1}) * ({xs}) = {c1 - a1 * xs}, so y = {ys}. "
                f"Check the second: ({a2}) * ({xs}) + ({b2}) * ({ys}) = {c2}.")
    return Problem("linear_system", f"Solve the system {eq1} and {eq2}.", solution,
                   f"x = {xs}, y = {ys}")


def quadratic(rng: random.Random) -> Problem:
    r1, r2 = sorted((rng.randint(-12, 12), rng.randint(-12, 12)))
    p, q = -(r1 + r2), r1 * r2
    poly = "x^2" + (f" {_signed(p)}x" if p else "") + (f" {_signed(q)}" if q else "")
    def factor(r: int) -> str:
        return "x" if r == 0 else f"(x {_signed(-r)})"
    for r in (r1, r2):
        assert r * r + p * r + q == 0
    roots = f"x = {r1}" if r1 == r2 else f"x = {r1} or x = {r2}"
    solution = (f"Look for two numbers with product {q} and sum {-p}: {r1} and {r2}. "
                f"So {poly} = {factor(r1)}{factor(r2)} = 0, which holds when {roots}.")
    return Problem("quadratic", f"Solve {poly} = 0.", solution, roots)


def fractions_sum(rng: random.Random) -> Problem:
    a, b = rng.randint(1, 12), rng.randint(2, 15)
    c, d = rng.randint(1, 12), rng.randint(2, 15)
    op = rng.choice("+-")
    lcm = b * d // math.gcd(b, d)
    n1, n2 = a * (lcm // b), c * (lcm // d)
    num = n1 + n2 if op == "+" else n1 - n2
    result = Fraction(num, lcm)
    exact = Fraction(a, b) + Fraction(c, d) if op == "+" else Fraction(a, b) - Fraction(c, d)
    assert result == exact
    solution = (f"The least common denominator of {b} and {d} is {lcm}. "
                f"{a}/{b} = {n1}/{lcm} and {c}/{d} = {n2}/{lcm}. "
                f"So the result is {num}/{lcm}" + ("." if math.gcd(num, lcm) == 1 else
                                                  f", which simplifies to {result}."))
    return Problem("fractions", f"Compute {a}/{b} {op} {c}/{d}.", solution, str(result))


def percentage(rng: random.Random) -> Problem:
    price = rng.randint(1, 100) * 20  # a multiple of 20: every listed percentage is whole dollars
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 75])
    change = Fraction(price * pct, 100)
    up = rng.random() < 0.5
    final = price + change if up else price - change
    assert final == price * (1 + Fraction(pct, 100) * (1 if up else -1))
    word = "increases" if up else "is discounted"
    solution = (f"{pct}% of {price} is {price} * {pct}/100 = {change}. "
                f"The new price is {price} {'+' if up else '-'} {change} = {final}.")
    return Problem("percentage", f"A price of {price} dollars {word} by {pct}%. What is the new "
                   f"price?", solution, f"{final} dollars")


def gcd_euclid(rng: random.Random) -> Problem:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(2, 40), g * rng.randint(2, 40)
    a, b = max(a, b), min(a, b)
    steps, x, y = [], a, b
    while y:
        steps.append(f"{x} = {x // y} * {y} + {x % y}")
        x, y = y, x % y
    assert x == math.gcd(a, b)
    solution = "Euclid's algorithm: " + "; ".join(steps) + f". The last non-zero remainder is {x}."
    return Problem("gcd", f"Find the greatest common divisor of {a} and {b}.", solution, str(x))


def arithmetic_series(rng: random.Random) -> Problem:
    first, diff, n = rng.randint(-20, 30), rng.randint(1, 12), rng.randint(5, 60)
    last = first + (n - 1) * diff
    total = n * (first + last) // 2
    assert total == sum(first + k * diff for k in range(n))
    solution = (f"The last term is {first} + ({n} - 1) * {diff} = {last}. The sum of an "
                f"arithmetic series is n * (first + last) / 2 = {n} * ({first} + {last}) / 2 "
                f"= {total}.")
    return Problem("series", f"Find the sum of the first {n} terms of the arithmetic sequence "
                   f"that starts at {first} and increases by {diff} each time.", solution,
                   str(total))


def expand_product(rng: random.Random) -> Problem:
    a, b, c, d = (rng.choice([i for i in range(-9, 10) if i]) for _ in range(4))
    x2, x1, x0 = a * c, a * d + b * c, b * d
    poly = f"{x2}x^2" + (f" {_signed(x1)}x" if x1 else "") + f" {_signed(x0)}"
    for t in (-2, 0, 1, 3):
        assert (a * t + b) * (c * t + d) == x2 * t * t + x1 * t + x0
    solution = (f"Multiply each term: {a}x * {c}x = {x2}x^2, {a}x * {d} + {b} * {c}x = {x1}x, "
                f"{b} * {d} = {x0}. Together: {poly}.")
    return Problem("expand", f"Expand ({_linear(a, b)})({_linear(c, d)}).", solution, poly)


def prime_factors(rng: random.Random) -> Problem:
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23]
    factors = sorted(rng.choice(primes) for _ in range(rng.randint(2, 5)))
    n = math.prod(factors)
    steps, m, out = [], n, []
    for p in primes:
        while m % p == 0:
            steps.append(f"{m} / {p} = {m // p}")
            m //= p
            out.append(p)
    assert m == 1 and out == factors and math.prod(out) == n
    answer = " * ".join(map(str, out))
    return Problem("prime_factors", f"Write {n} as a product of primes.",
                   "Divide by the smallest prime that fits, repeatedly: " + ", ".join(steps)
                   + f". So {n} = {answer}.", answer)


def rate_problem(rng: random.Random) -> Problem:
    speed, hours = rng.randint(20, 120), rng.randint(2, 9)
    extra = rng.randint(10, 200)
    dist = speed * hours + extra
    assert dist - extra == speed * hours
    name = rng.choice(["A train", "A cyclist", "A truck", "A boat", "A bus"])
    solution = (f"Distance = speed * time, so the first part covers {speed} * {hours} = "
                f"{speed * hours} km. Adding the last {extra} km gives {dist} km.")
    return Problem("rate", f"{name} travels at {speed} km/h for {hours} hours and then another "
                   f"{extra} km. How far does it travel in total?", solution, f"{dist} km")


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": arithmetic, "linear_equation": linear_equation, "linear_system": linear_system,
    "quadratic": quadratic, "fractions": fractions_sum, "percentage": percentage,
    "gcd": gcd_euclid, "series": arithmetic_series, "expand": expand_product,
    "prime_factors": prime_factors, "rate": rate_problem,
}


def generate_problem(rng: random.Random) -> Problem:
    """One worked problem of a kind chosen uniformly from `GENERATORS`."""
    return GENERATORS[rng.choice(sorted(GENERATORS))](rng)


def worksheet(rng: random.Random, n: int) -> tuple[str, list[Problem]]:
    """`n` worked problems as one document (a worksheet); returns (text, problems)."""
    problems = [generate_problem(rng) for _ in range(n)]
    body = "\n\n".join(f"{i}. {p.text}" for i, p in enumerate(problems, 1))
    return "Worked problems in arithmetic and algebra, with solutions.\n\n" + body, problems
