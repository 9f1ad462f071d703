"""Math environment: problems across the atomic-ability hierarchy, exact answers checked by sympy.

    env = MathEnv()
    task = env.generate(seed=7, difficulty=3)   # 1 basic computation, 2 complex reasoning,
    env.check(task, "5")                        # 3 metacognition (verify, reject, find the error)

The hierarchy follows the paper's math data (basic computation -> complex reasoning ->
metacognition, with plan -> act -> feedback/reflect loops). Every problem has an exact answer
(a rational, an algebraic number, a set of roots or an ordered pair), a list of gold steps with
the `calculator` expression of each, verification templates (expressions that evaluate to 0 for
a correct answer) and near-miss wrong answers (sign slips, off-by-one, naive fraction addition,
an extraneous root kept, decimals of a non-terminating fraction). The checker parses answers
with sympy under a whitelist (no attribute access, no unknown names, bounded powers), turns
decimals into exact rationals (0.333 != 1/3) and compares exactly.
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from tokenize import TokenError
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.parsing.sympy_parser import (convert_xor, parse_expr, rationalize,
                                        standard_transformations)

from youtu.agentic.envs.base import Env, function_schema
from youtu.agentic.trajectory import Step, Task, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

ABILITIES = {1: "basic_computation", 2: "complex_reasoning", 3: "metacognition"}

_X, _Y = sp.symbols("x y")
_NAMES: dict[str, Any] = {
    "sqrt": sp.sqrt, "pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo, "Abs": sp.Abs,
    "abs": sp.Abs, "gcd": sp.gcd, "lcm": sp.lcm, "binomial": sp.binomial,
    "factorial": sp.factorial, "Mod": sp.Mod, "log": sp.log, "exp": sp.exp, "x": _X, "y": _Y,
    "Rational": sp.Rational, "Integer": sp.Integer, "Float": sp.Float, "Symbol": sp.Symbol,
    "Add": sp.Add, "Mul": sp.Mul, "Pow": sp.Pow,
}
_ALLOWED_CHARS = re.compile(r"^[0-9A-Za-z_+\-*/^().,\s]*$")
_TRANSFORMS = standard_transformations + (convert_xor, rationalize)
_MAX_EXPONENT = 200
_MAX_FACTORIAL = 200


@functools.lru_cache(maxsize=8192)
def parse_exact(text: str) -> sp.Expr:
    """Parse an answer or calculator expression exactly and safely; ValueError if refused.

    Decimals become exact rationals; '^' is a power; only whitelisted function names and the
    variables x, y are known; powers and factorials are bounded so no input can hang.
    """
    text = text.strip().replace("\u2212", "-").replace("\u00d7", "*").replace("\u00f7", "/")
    if not text or len(text) > 300:
        raise ValueError("expression is empty or longer than 300 characters")
    if not _ALLOWED_CHARS.match(text) or "__" in text or re.search(r"\.(?!\d)", text):
        raise ValueError(f"expression {text[:60]!r} has characters a number cannot have")
    for name in re.findall(r"[A-Za-z_]\w*", text):
        if name not in _NAMES:
            raise ValueError(f"unknown name {name!r} in expression")
    if re.search(r"\d{61}", text):
        raise ValueError("number is too large")
    for name in re.finditer(r"(factorial|binomial)\s*\(", text):
        # sympy evaluates these eagerly even unevaluated: allow only small literal arguments.
        args = re.match(r"([\d\s,]*)\)", text[name.end():])
        if args is None or any(int(a) >= 1000 for a in re.findall(r"\d+", args.group(1))):
            raise ValueError(f"{name.group(1)} takes only integer literals below 1000")
    try:
        if re.search(r"\^|\*\*|factorial|binomial|exp|!", text):
            # Only powers and factorials can blow up: parse unevaluated, bound them, then evaluate.
            lazy = parse_expr(text, local_dict={}, global_dict=dict(_NAMES),
                              transformations=_TRANSFORMS, evaluate=False)
            _guard(lazy)
        value = parse_expr(text, local_dict={}, global_dict=dict(_NAMES),
                           transformations=_TRANSFORMS)
    except (SyntaxError, TypeError, ValueError, NameError, AttributeError, ZeroDivisionError,
            RecursionError, TokenError) as e:
        raise ValueError(f"cannot parse {text[:60]!r}: {e}") from e
    if not isinstance(value, sp.Basic):
        raise ValueError(f"{text[:60]!r} is not a single expression")
    return value


def _guard(expr: Any) -> None:
    if not isinstance(expr, sp.Basic):
        raise ValueError(f"not an expression: {expr!r}")
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_Number and abs(node.exp) > _MAX_EXPONENT:
            raise ValueError(f"exponent {node.exp} is too large (limit {_MAX_EXPONENT})")
        if isinstance(node, sp.Pow) and not node.exp.is_Number:
            if any(isinstance(a, sp.Pow) for a in sp.preorder_traversal(node.exp)):
                raise ValueError("nested powers are not allowed")
        if (isinstance(node, sp.factorial) and node.args[0].is_Number
                and node.args[0] > _MAX_FACTORIAL):
            raise ValueError(f"factorial argument is too large (limit {_MAX_FACTORIAL})")
        if isinstance(node, sp.Integer) and abs(node) > 10**60:
            raise ValueError("number is too large")


def show(value: Any) -> str:
    """A sympy value as answer text: '7/3', '-2', '3*sqrt(2)'."""
    return str(sp.nsimplify(value) if isinstance(value, float) else value).replace("**", "^")


def calculate(expression: str) -> str:
    """The `calculator` tool: exact value of `expression` (simplified), or 'error: ...'."""
    try:
        value = sp.simplify(parse_exact(expression))
    except (ValueError, TypeError, ZeroDivisionError) as e:
        return f"error: {e}"
    if value.has(sp.zoo, sp.nan):
        return "error: division by zero"
    return show(value)


# ---------------------------------------------------------------------------------------------
# answers


def _split_answer(text: str, kind: str) -> list[str]:
    text = text.strip().strip("$").strip()
    text = re.sub(r"\\(left|right)", "", text)
    text = re.sub(r"\\frac\{([^{}]+)\}\{([^{}]+)\}", r"(\1)/(\2)", text)
    text = text.replace("\\{", "{").replace("\\}", "}").replace("\\sqrt", "sqrt")
    if kind in ("set", "tuple"):
        text = re.sub(r"\b(or|and)\b|;", ",", text)
        text = text.strip().lstrip("{(").rstrip("})")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return [re.sub(r"^[xy]\s*=\s*", "", p) for p in parts]
    return [re.sub(r"^[xy]\s*=\s*", "", text)]


def answers_equal(a: sp.Expr, b: sp.Expr) -> bool:
    """Exact equality (rationals directly, algebraic numbers and expressions by simplify)."""
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    return bool(sp.simplify(a - b) == 0)


# ---------------------------------------------------------------------------------------------
# problem families


@dataclass
class _Problem:
    family: str
    prompt: str
    answer: str
    kind: str  # number | set | tuple
    steps: list[Step]
    near: list[str]
    verify: list[str]
    """Calculator templates ({v} or {v0},{v1}) that give 0 for a correct answer."""
    mistake: dict[str, str] = field(default_factory=dict)
    """The teacher's controlled mistake: {'wrong', 'why', 'fix'}."""


def _calc(description: str, expression: str) -> Step:
    return Step(description=description, tool="calculator", arguments={"expression": expression},
                result=calculate(expression))


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    return rng.choice([v for v in range(lo, hi + 1) if v != 0])


def _fractions(rng: random.Random) -> _Problem:
    while True:
        a, c, e = (Fraction(rng.randint(1, 9), rng.randint(2, 9)) for _ in range(3))
        if all(f.denominator > 1 for f in (a, c, e)) and (a + c) * e != a + c * e:
            break
    expr = f"{a} + {c} * {e}"
    prod = c * e
    value = a + prod
    naive = Fraction(a.numerator + prod.numerator, a.denominator + prod.denominator)
    near = [str(naive), str(value + 1), str((a + c) * e)]
    if value.denominator not in (1, 2, 4, 5, 8, 10):
        near.append(f"{float(value):.3f}")
    return _Problem(
        "fraction_arithmetic", f"Compute exactly: {expr}. Give the result as a reduced fraction.",
        str(value), "number",
        [_calc("Multiply first (order of operations)", f"{c} * {e}"),
         _calc("Add the product to the first fraction", f"{a} + {prod}")],
        [n for n in near if Fraction(n) != value], [f"({{v}}) - ({expr})"],
        {"wrong": str((a + c) * e), "why": "I added before multiplying, ignoring the order of "
         "operations", "fix": "Multiplication binds tighter: multiply first, then add"})


def _gcd_lcm(rng: random.Random) -> _Problem:
    g = rng.randint(2, 40)
    a, b = g * rng.randint(2, 30), g * rng.randint(2, 30)
    while a == b:
        b = g * rng.randint(2, 30)
    gv, lv = math.gcd(a, b), math.lcm(a, b)
    return _Problem(
        "gcd_lcm", f"Find lcm({a}, {b}) - gcd({a}, {b}).", str(lv - gv), "number",
        [_calc("Greatest common divisor", f"gcd({a}, {b})"),
         _calc("Least common multiple", f"lcm({a}, {b})"),
         _calc("Subtract", f"{lv} - {gv}")],
        [str(a * b - gv), str(lv + gv), str(lv - gv + 1)],
        [f"{{v}} - (lcm({a}, {b}) - gcd({a}, {b}))"],
        {"wrong": str(a * b - gv), "why": "I used the product a*b as the lcm, but that is only "
         "right for coprime numbers", "fix": "lcm = a*b / gcd"})


def _modular(rng: random.Random) -> _Problem:
    a, k, m = rng.randint(2, 60), rng.randint(3, 30), rng.randint(5, 60)
    value = pow(a, k, m)
    wrong = (a * k) % m
    near = [str(v) for v in {(value + 1) % m, wrong, (value - 1) % m} if v != value]
    return _Problem(
        "modular_power", f"What is the remainder when {a}^{k} is divided by {m}?", str(value),
        "number", [_calc("Compute the power", f"{a}^{k}"),
                   _calc("Reduce modulo m", f"Mod({a}^{k}, {m})")],
        near, [f"{{v}} - Mod({a}^{k}, {m})"],
        {"wrong": str(wrong), "why": f"I multiplied {a} by {k} instead of raising it to the "
         f"power {k}", "fix": "raise to the power, then reduce"} if wrong != value else {})


def _percent(rng: random.Random) -> _Problem:
    base, p, q = rng.randint(2, 2000) * 5, rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 60]), \
        rng.choice([5, 8, 10, 15, 20, 25, 30])
    value = Fraction(base) * (100 + p) / 100 * (100 - q) / 100
    wrong = Fraction(base) * (100 + p - q) / 100
    return _Problem(
        "percent_change", f"A price of {base} rises by {p}% and the new price then falls by {q}%. "
        "What is the final price (exactly)?", str(value), "number",
        [_calc("Apply the increase", f"{base} * (100 + {p}) / 100"),
         _calc("Apply the decrease to the new price",
               f"{base} * (100 + {p}) / 100 * (100 - {q}) / 100")],
        [str(v) for v in {wrong, value + 1} if v != value],
        [f"{{v}} - {base} * (100 + {p}) / 100 * (100 - {q}) / 100"],
        {"wrong": str(wrong), "why": f"I added the percentages ({p}% - {q}%), but the second "
         "change applies to the new price", "fix": "apply the changes one after the other"}
        if wrong != value else {})


def _linear(rng: random.Random) -> _Problem:
    a, c = rng.randint(2, 9), rng.randint(-9, 9)
    while c == a:
        c = rng.randint(-9, 9)
    b, d = rng.randint(-20, 20), rng.randint(-20, 20)
    value = Fraction(d - b, a - c)
    wrong = Fraction(d + b, a - c)
    lhs, rhs = f"{a}*x + {b}".replace("+ -", "- "), f"{c}*x + {d}".replace("+ -", "- ")
    return _Problem(
        "linear_equation", f"Solve for x: {lhs} = {rhs}.", str(value), "number",
        [_calc("Collect the x terms on the left", f"{a} - {c}"),
         _calc("Collect the constants on the right", f"{d} - ({b})"),
         _calc("Divide", f"({d} - ({b})) / ({a} - {c})")],
        [str(v) for v in {wrong, -value, value + 1} if v != value],
        [f"({lhs.replace('x', '({v})')}) - ({rhs.replace('x', '({v})')})"],
        {"wrong": str(wrong), "why": f"I moved {b} across the equals sign without changing its "
         "sign", "fix": "subtract the constant from both sides"} if wrong != value else {})


def _system(rng: random.Random) -> _Problem:
    x, y = _nonzero(rng, -15, 15), _nonzero(rng, -15, 15)
    while True:
        a, b, c, d = (_nonzero(rng, -6, 6) for _ in range(4))
        if a * d - b * c != 0:
            break
    e, f = a * x + b * y, c * x + d * y

    def eq(p: int, q: int, r: int) -> str:
        return f"{p}x + {q}y = {r}".replace("+ -", "- ")
    return _Problem(
        "linear_system", f"Solve the system {eq(a, b, e)} and {eq(c, d, f)}. Answer as (x, y).",
        f"({x}, {y})", "tuple",
        [_calc("Determinant of the coefficients", f"{a}*{d} - {b}*{c}"),
         _calc("x by Cramer's rule", f"({e}*{d} - {b}*{f}) / ({a}*{d} - {b}*{c})"),
         _calc("y by Cramer's rule", f"({a}*{f} - {e}*{c}) / ({a}*{d} - {b}*{c})")],
        [f"({y}, {x})", f"({x}, {-y})"] if x != y else [f"({x}, {-y})", f"({-x}, {y})"],
        [f"{a}*({{v0}}) + {b}*({{v1}}) - {e}", f"{c}*({{v0}}) + {d}*({{v1}}) - {f}"],
        {"wrong": f"({y}, {x})", "why": "I swapped x and y when writing the pair",
         "fix": "write (x, y) in that order"} if x != y else {})


def _quadratic(rng: random.Random) -> _Problem:
    r1, r2 = _nonzero(rng, -25, 25), _nonzero(rng, -25, 25)
    while r2 == r1 or r2 == -r1:
        r2 = _nonzero(rng, -25, 25)
    k = rng.randint(1, 6)
    b, c = -k * (r1 + r2), k * r1 * r2
    poly = f"{k}x^2 + {b}x + {c}".replace("+ -", "- ").replace("1x^2", "x^2", 1 if k == 1 else 0)
    roots = sorted([r1, r2])
    return _Problem(
        "quadratic_roots", f"Find all real solutions of {poly} = 0. Answer as a set {{a, b}}.",
        "{" + ", ".join(map(str, roots)) + "}", "set",
        [_calc("Discriminant", f"({b})^2 - 4*{k}*({c})"),
         _calc("First root", f"(-({b}) - sqrt(({b})^2 - 4*{k}*({c}))) / (2*{k})"),
         _calc("Second root", f"(-({b}) + sqrt(({b})^2 - 4*{k}*({c}))) / (2*{k})")],
        ["{" + f"{-roots[0]}, {-roots[1]}" + "}", "{" + str(roots[0]) + "}"],
        [f"{k}*({{v}})^2 + ({b})*({{v}}) + ({c})"],
        {"wrong": "{" + f"{-roots[1]}, {-roots[0]}" + "}", "why": "I read the roots off the "
         "factors with the wrong sign: (x - r) = 0 gives x = r, not -r",
         "fix": "use the quadratic formula"})


def _series(rng: random.Random) -> _Problem:
    a, d, n = rng.randint(-10, 20), _nonzero(rng, -5, 9), rng.randint(8, 40)
    value = n * (2 * a + (n - 1) * d) // 2
    wrong = (n - 1) * (2 * a + (n - 2) * d) // 2
    return _Problem(
        "arithmetic_series", f"An arithmetic sequence starts at {a} with common difference {d}. "
        f"What is the sum of its first {n} terms?", str(value), "number",
        [_calc("Last term", f"{a} + ({n} - 1)*({d})"),
         _calc("Sum = n * (first + last) / 2", f"{n} * ({a} + {a} + ({n} - 1)*({d})) / 2")],
        [str(v) for v in {wrong, value + d, n * (a + a + n * d) // 2} if v != value],
        [f"{{v}} - {n} * (2*({a}) + ({n} - 1)*({d})) / 2"],
        {"wrong": str(wrong), "why": f"I summed only {n - 1} terms (an off-by-one in the count)",
         "fix": f"the last term is a + ({n} - 1)d and there are {n} terms"}
        if wrong != value else {})


def _combinatorics(rng: random.Random) -> _Problem:
    n, k = rng.randint(5, 30), rng.randint(2, 5)
    m, j = rng.randint(4, 25), rng.randint(1, 4)
    big, small = rng.choice([("teachers", "students"), ("engineers", "designers"),
                             ("senators", "deputies"), ("doctors", "nurses")])
    value = math.comb(n, k) * math.comb(m, j)
    wrong = math.perm(n, k) * math.perm(m, j)
    return _Problem(
        "combinatorics", f"A committee of {k} {big} and {j} {small} is chosen from {n} "
        f"{big} and {m} {small}. How many different committees are possible?", str(value),
        "number", [_calc("Ways to choose the teachers", f"binomial({n}, {k})"),
                   _calc("Ways to choose the students", f"binomial({m}, {j})"),
                   _calc("Multiply (independent choices)",
                         f"binomial({n}, {k}) * binomial({m}, {j})")],
        [str(v) for v in {wrong, math.comb(n, k) + math.comb(m, j), math.comb(n + m, k + j)}
         if v != value],
        [f"{{v}} - binomial({n}, {k}) * binomial({m}, {j})"],
        {"wrong": str(wrong), "why": "I counted ordered selections, but a committee has no order",
         "fix": "use binomial coefficients"})


def _probability(rng: random.Random) -> _Problem:
    r, b = rng.randint(2, 60), rng.randint(2, 60)
    box, things = rng.choice([("bag", "marbles"), ("drawer", "socks"), ("jar", "sweets"),
                              ("box", "balls")])
    value = Fraction(r * (r - 1), (r + b) * (r + b - 1))
    wrong = Fraction(r, r + b) ** 2
    return _Problem(
        "probability", f"A {box} holds {r} red and {b} blue {things}. Two are drawn without "
        "replacement. What is the probability that both are red?", str(value), "number",
        [_calc("First draw red", f"{r} / ({r} + {b})"),
         _calc("Second draw red given the first was red", f"({r} - 1) / ({r} + {b} - 1)"),
         _calc("Multiply", f"{r} / ({r} + {b}) * ({r} - 1) / ({r} + {b} - 1)")],
        [str(wrong), f"{float(value):.2f}"],
        [f"{{v}} - {r}*({r} - 1) / (({r} + {b})*({r} + {b} - 1))"],
        {"wrong": str(wrong), "why": "I treated the draws as independent (with replacement)",
         "fix": "after one red marble is drawn, one fewer red and one fewer marble remain"})


def _work_rate(rng: random.Random) -> _Problem:
    a, b = rng.randint(2, 80), rng.randint(2, 80)
    while b == a:
        b = rng.randint(2, 80)
    value = Fraction(a * b, a + b)
    x, y, job, unit = rng.choice([("Pipe A", "pipe B", "fills a tank", "hours"),
                                  ("Printer A", "printer B", "prints the batch", "minutes"),
                                  ("Ana", "Ben", "paints the fence", "hours")])
    return _Problem(
        "work_rate", f"{x} {job} in {a} {unit} and {y} does it in {b} {unit}. How many {unit} "
        "do they take together? Give an exact fraction.", str(value), "number",
        [_calc("Combined rate in tanks per hour", f"1/{a} + 1/{b}"),
         _calc("Time is the reciprocal of the rate", f"1 / (1/{a} + 1/{b})")],
        [str(Fraction(a + b, 2)), f"{float(value):.2f}", str(a + b)],
        [f"({{v}}) * (1/{a} + 1/{b}) - 1"],
        {"wrong": str(Fraction(a + b, 2)), "why": "I averaged the times, but rates add, not times",
         "fix": "add the rates 1/a + 1/b and invert"})


def _extraneous(rng: random.Random) -> _Problem:
    while True:
        b, r = rng.randint(0, 100), rng.randint(1, 300)
        s = 2 * b + 1 - r  # the other root of x + a = (x - b)^2
        a = (r - b) ** 2 - r
        if r - b > 0 and s - b < 0 and s + a >= 0 and s != r:
            break
    rhs = f"x - {b}" if b else "x"
    disc = (2 * b + 1) ** 2 - 4 * (b * b - a)
    return _Problem(
        "extraneous_root", f"Solve sqrt(x + {a}) = {rhs} over the reals. Answer as a set of all "
        "solutions.".replace("+ -", "- "), "{" + str(r) + "}", "set",
        [_calc("Square both sides (x + a = (x - b)^2) and solve: first candidate",
               f"({2 * b + 1} - sqrt({disc})) / 2"),
         _calc("Second candidate", f"({2 * b + 1} + sqrt({disc})) / 2"),
         _calc("Check the candidates in the ORIGINAL equation", f"sqrt({s} + {a}) - ({s} - {b})")],
        ["{" + f"{min(r, s)}, {max(r, s)}" + "}", "{" + str(s) + "}"],
        [f"sqrt(({{v}}) + {a}) - (({{v}}) - {b})"],
        {"wrong": "{" + f"{min(r, s)}, {max(r, s)}" + "}", "why": "squaring added a root: "
         "one candidate makes the right side negative, which a square root never is",
         "fix": "keep only candidates that satisfy the original equation"})


def _rectangle(rng: random.Random) -> _Problem:
    w, d = rng.randint(2, 300), rng.randint(1, 80)
    area = w * (w + d)
    return _Problem(
        "constrained_quadratic", f"A rectangle is {d} cm longer than it is wide and its area is "
        f"{area} cm^2. What is its width in cm?", str(w), "number",
        [_calc("Set up w(w + d) = area: w^2 + d*w - area = 0; discriminant", f"{d}^2 + 4*{area}"),
         _calc("Positive root", f"(-{d} + sqrt({d}^2 + 4*{area})) / 2"),
         _calc("Negative root (a length cannot be negative)",
               f"(-{d} - sqrt({d}^2 + 4*{area})) / 2")],
        [str(-w - d), str(w + d), str(w + 1)], [f"({{v}})*(({{v}}) + {d}) - {area}"],
        {"wrong": str(w + d), "why": "I reported the length, but the question asks for the width",
         "fix": "re-read the question: width = length - d"})


def _error_finding(rng: random.Random) -> _Problem:
    a, d, n = rng.randint(-20, 60), rng.randint(2, 15), rng.randint(6, 40)
    value = n * (2 * a + (n - 1) * d) // 2
    student = n * (2 * a + n * d) // 2
    return _Problem(
        "find_the_error", f"A student computes the sum {a} + {a + d} + {a + 2 * d} + ... + "
        f"{a + (n - 1) * d} ({n} terms) as {n}*({a} + {a + n * d})/2 = {student}. Check the work "
        "and give the correct sum.", str(value), "number",
        [_calc("Correct last term", f"{a} + ({n} - 1)*{d}"),
         _calc("Correct sum", f"{n} * ({a} + {a + (n - 1) * d}) / 2")],
        [str(student), str(value + d)], [f"{{v}} - {n} * ({a} + {a + (n - 1) * d}) / 2"],
        {"wrong": str(student), "why": f"I trusted the student's last term {a + n * d}; the "
         f"{n}th term is a + ({n} - 1)d", "fix": "recompute the last term"})


_LEADS = ["", "", "Problem: ", "Exercise. ", "Quick question: ", "From a worksheet: ",
          "Homework check. ", "Try this one. "]
"""Ways a problem is introduced (the problem text itself is the family's)."""

FAMILIES = {
    1: [_fractions, _gcd_lcm, _modular, _percent],
    2: [_linear, _system, _quadratic, _series, _combinatorics, _probability, _work_rate],
    3: [_extraneous, _rectangle, _error_finding],
}


class MathEnv(Env):
    """Exact-answer math across basic computation, complex reasoning and metacognition."""

    name = "math"
    version = "1"
    system_prompt = ("You are a careful mathematician. Analyse the problem, plan, compute with "
                     "the calculator, verify your result, and give the final answer in \\boxed{}.")

    @property
    def tools(self) -> list[dict[str, Any]]:
        return [function_schema("calculator", "Evaluate a math expression exactly (fractions, "
                                "sqrt, ^, gcd, lcm, binomial, Mod). Returns the simplified value.",
                                {"expression": {"type": "string",
                                                "description": "e.g. 3/4 + 2^5"}})]

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        level = self._difficulty(difficulty)
        rng = random.Random(f"math/{seed}/{difficulty}")
        family = rng.choice(FAMILIES[level])
        prob = family(rng)
        lead = rng.choice(_LEADS)
        task = Task(
            id=f"math-{seed}-{difficulty}", env=self.name, seed=seed, difficulty=difficulty,
            prompt=lead + prob.prompt, answer=prob.answer, steps=prob.steps,
            meta={"family": prob.family, "ability": ABILITIES[level], "kind": prob.kind,
                  "verify": prob.verify, "mistake": prob.mistake})
        # A generic near-miss can coincide with the answer (0.30 is 3/10): keep the wrong ones.
        task.near_misses = [n for n in dict.fromkeys(prob.near) if not self.check(task, n).correct]
        if prob.mistake and self.check(task, prob.mistake["wrong"]).correct:
            task.meta["mistake"] = {}  # this instance has no wrong route of that kind
        return task

    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        if name != "calculator":
            return f"error: unknown tool {name!r}; available: calculator"
        expr = arguments.get("expression")
        if not isinstance(expr, str):
            return "error: 'expression' must be a string"
        return calculate(expr)

    def check(self, task: Task, answer: str) -> Verdict:
        kind = task.meta["kind"]
        try:
            got = [parse_exact(p) for p in _split_answer(answer, kind)]
            want = [parse_exact(p) for p in _split_answer(task.answer, kind)]
        except ValueError as e:
            return Verdict(False, 0.0, f"unparseable answer: {e}", "math/sympy-exact")
        if kind == "number":
            ok = len(got) == 1 and answers_equal(got[0], want[0])
        elif kind == "tuple":
            ok = len(got) == len(want) and all(answers_equal(g, w) for g, w in zip(got, want))
        else:
            ok = (all(any(answers_equal(g, w) for w in want) for g in got)
                  and all(any(answers_equal(g, w) for g in got) for w in want))
        detail = f"{answer!r} {'==' if ok else '!='} {task.answer!r} ({kind})"
        return Verdict(ok, float(ok), detail, "math/sympy-exact")

    def verification_calls(self, task: Task, answer: str) -> list[str]:
        """Calculator expressions that all evaluate to 0 exactly when `answer` is right."""
        values = _split_answer(answer, task.meta["kind"])
        out = []
        for template in task.meta["verify"]:
            if "{v0}" in template:
                out.append(template.format(**{f"v{i}": v for i, v in enumerate(values)}))
            else:
                out += [template.format(v=v) for v in values]
        return out

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        from youtu.agentic.envs.math_teacher import teach

        return teach(self, task, b, rng, mistake)
