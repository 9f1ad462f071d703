"""Procedural arithmetic word problems scored by exact match (a GSM8K-shaped probe that small
models can move on).

    problems = [make_problem(seed) for seed in range(1_000_000, 1_000_050)]
    score = run_math_word(lm, n=50)["score"]

Each problem is a short story with one to three integer operations; the answer is computed
from the drawn quantities, never parsed back from text. The prompt is `shots` solved problems
(from seeds of a separate range) then `Question: ...\\nAnswer:`; the model's first integer
before a newline is its answer. Seeds start at 1,000,000 (held out from all training data,
like the agentic probes); the story templates differ from the data pipeline's worked problems
(`youtu.data.stem`), so a score measures transfer rather than recall.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from youtu.eval.harness import LM, GenerationRequest

EVAL_SEED = 1_000_000
"""First seed of the evaluated problems."""
SHOT_SEED = 3_000_000
"""First seed of the few-shot examples (never an evaluated problem)."""

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cards", "shells", "coins"]


@dataclass(frozen=True)
class WordProblem:
    """A question, its one-line worked solution and the integer answer."""

    question: str
    solution: str
    answer: int

    @property
    def text(self) -> str:
        """The solved problem as a document (few-shot example, held-out text for bits/byte)."""
        return f"Question: {self.question}\nAnswer: {self.solution} The answer is {self.answer}."


def _stock(r: random.Random) -> WordProblem:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.randint(5, 60), r.randint(2, 40)
    c = r.randint(1, a + b)
    return WordProblem(f"{name} has {a} {item}. {name} buys {b} more and gives away {c}. How "
                       f"many {item} does {name} have now?", f"{a} + {b} - {c} = {a + b - c}.",
                       a + b - c)


def _distance(r: random.Random) -> WordProblem:
    v, t = r.randint(3, 90), r.randint(2, 9)
    vehicle = r.choice(["car", "train", "cyclist", "boat"])
    return WordProblem(f"A {vehicle} travels {v} km every hour. How many km does it travel in {t} "
                       f"hours?", f"{v} * {t} = {v * t}.", v * t)


def _share(r: random.Random) -> WordProblem:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    each, k = r.randint(2, 25), r.randint(2, 9)
    return WordProblem(f"{name} shares {each * k} {item} equally among {k} friends. How many "
                       f"{item} does each friend get?", f"{each * k} / {k} = {each}.", each)


def _change(r: random.Random) -> WordProblem:
    name = r.choice(NAMES)
    price, n = r.randint(2, 15), r.randint(2, 6)
    bill = next(b for b in (20, 50, 100, 200) if b > price * n)
    item = r.choice(["notebook", "sandwich", "ticket", "plant"])
    return WordProblem(f"One {item} costs {price} dollars. {name} buys {n} of them and pays with "
                       f"a {bill} dollar bill. How many dollars of change does {name} get?",
                       f"{bill} - {price} * {n} = {bill - price * n}.", bill - price * n)


def _age(r: random.Random) -> WordProblem:
    x, y = r.sample(NAMES, 2)
    a, b, c = r.randint(3, 40), r.randint(1, 30), r.randint(1, 20)
    return WordProblem(f"{x} is {a} years old. {y} is {b} years older than {x}. How old will {y} "
                       f"be in {c} years?", f"{a} + {b} + {c} = {a + b + c}.", a + b + c)


def _perimeter(r: random.Random) -> WordProblem:
    w, h = r.randint(2, 50), r.randint(2, 50)
    return WordProblem(f"A garden is {w} m wide and {h} m long. How many meters of fence go "
                       f"around it?", f"2 * ({w} + {h}) = {2 * (w + h)}.", 2 * (w + h))


TEMPLATES: list[Callable[[random.Random], WordProblem]] = [
    _stock, _distance, _share, _change, _age, _perimeter]


def make_problem(seed: int) -> WordProblem:
    """The problem of `seed` (deterministic)."""
    r = random.Random(seed)
    return r.choice(TEMPLATES)(r)


def few_shot_prefix(shots: int) -> str:
    """`shots` solved problems, one per paragraph."""
    return "".join(make_problem(SHOT_SEED + i).text + "\n\n" for i in range(shots))


def extract_integer(text: str) -> int | None:
    """The last integer of the first line: '23 + 12 - 7 = 28. The answer is 28.' -> 28, ' 1,200'
    -> 1200; None when there is none."""
    numbers = re.findall(r"-?\d[\d,]*", text.split("\n", 1)[0])
    return int(numbers[-1].replace(",", "")) if numbers else None


def run_math_word(lm: LM, n: int = 50, shots: int = 3, max_new_tokens: int = 24,
                  seed: int = EVAL_SEED) -> dict[str, Any]:
    """Exact-match accuracy on `n` problems (seeds `seed..seed+n-1`).

    The model may answer directly ("Answer: 28") or after a worked line like the examples; the
    last integer of its first line counts (`extract_integer`).
    """
    prefix = few_shot_prefix(shots)
    problems = [make_problem(seed + i) for i in range(n)]
    outputs = lm.generate_until([GenerationRequest(f"{prefix}Question: {p.question}\nAnswer:",
                                                   max_new_tokens, until=("\n",))
                                 for p in problems])
    rows = []
    for i, (p, out) in enumerate(zip(problems, outputs)):
        pred = extract_integer(out)
        rows.append({"id": seed + i, "question": p.question, "answer": p.answer, "output": out,
                     "pred": pred, "correct": pred == p.answer})
    correct = sum(r["correct"] for r in rows)
    return {"score": correct / max(n, 1), "correct": correct, "n": n, "rows": rows}
