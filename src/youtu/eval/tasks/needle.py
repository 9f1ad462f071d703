"""Needle in a haystack: can the model retrieve one fact planted at a given depth of a long
context, up to the context length it was trained for?

    res = run_needle(lm, max_tokens=2048)       # {'score', 'grid': {'1024@0.50': ...}, ...}

A haystack is filler prose (fixed sentences in a seeded order) with one needle sentence, "The
secret code of <city> is <7-digit number>.", inserted at a relative depth (0 = start, 1 = end).
The question follows the haystack, and the answer is prefilled up to the number, so the model
only has to copy it: "... Answer: The secret code of <city> is". Correct when the first
number generated is the code. The log-probability of the code (when the backend computes
log-likelihoods) is kept as a smoother signal for models too small to copy exactly.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
from collections.abc import Sequence
from typing import Any

from youtu.eval.harness import LM, GenerationRequest

logger = logging.getLogger(__name__)

FILLER = [
    "The river bends twice before it reaches the old mill.",
    "Most of the village gardens grow beans, onions and a little wheat.",
    "In spring the hills turn green and the roads fill with carts.",
    "The library opens at nine and closes when the last reader leaves.",
    "A narrow bridge crosses the canal near the market square.",
    "Fishermen mend their nets on the quay in the early morning.",
    "The school choir practises every Thursday in the town hall.",
    "Snow rarely falls here, but the winter winds are cold.",
    "The baker sells rye bread, apple cakes and small honey biscuits.",
    "Travellers often stop at the inn to rest their horses.",
    "An old clock tower stands at the centre of the main street.",
    "The museum keeps maps drawn by sailors two centuries ago.",
]
CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Nairobi", "Lima", "Perth", "Tallinn", "Cusco",
          "Dakar"]
QUESTION = "\n\nQuestion: What is the secret code of {city}?\nAnswer: The secret code of {city} is"


def _count_tokens(lm: LM, text: str) -> int:
    n = lm.truncate(text, 1 << 30)[1]
    return n if n >= 0 else len(text) // 4  # endpoint without a tokenizer: ~4 chars a token


def build_haystack(lm: LM, n_tokens: int, depth: float, seed: int) -> tuple[str, int]:
    """(prompt of about `n_tokens` tokens with the needle at `depth`, the code)."""
    r = random.Random(seed)
    city, code = r.choice(CITIES), r.randint(1_000_000, 9_999_999)
    needle = f"The secret code of {city} is {code}."
    question = QUESTION.format(city=city)
    budget = n_tokens - _count_tokens(lm, needle + " " + question)
    sentences: list[str] = []
    per_sentence = max(1, _count_tokens(lm, " ".join(FILLER)) // len(FILLER))
    while (len(sentences) + 1) * per_sentence <= budget:
        sentences.append(r.choice(FILLER))
    sentences.insert(round(depth * len(sentences)), needle)
    return " ".join(sentences) + question, code


def run_needle(lm: LM, max_tokens: int, lengths: Sequence[int] = (),
               depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 1_000_000,
               max_new_tokens: int = 12) -> dict[str, Any]:
    """Retrieval accuracy over a grid of context lengths x depths.

    Args:
        lm: The model.
        max_tokens: The trained context length; the longest haystack fills it minus the answer.
        lengths: Haystack lengths in tokens; empty = 1/4, 1/2 and all of `max_tokens`.
        depths: Relative needle depths.
        seed: Seed of the first cell (needles and filler order vary per cell).
        max_new_tokens: Generation budget for the answer.
    """
    room = max_tokens - max_new_tokens - 2  # BOS and a margin for re-tokenisation at joins
    lengths = sorted(set(lengths or [room // 4, room // 2, room]))
    if any(n > room or n < 64 for n in lengths):
        raise ValueError(f"needle lengths must lie in [64, {room}] for max_tokens {max_tokens}, "
                         f"got {list(lengths)}")
    cells = [(n, d, build_haystack(lm, n, d, seed + i))
             for i, (n, d) in enumerate((n, d) for n in lengths for d in depths)]
    outputs = lm.generate_until([GenerationRequest(p, max_new_tokens, until=("\n",))
                                 for _, _, (p, _) in cells])
    try:
        logps = [r.logprob for r in lm.loglikelihood([(p, f" {c}") for _, _, (p, c) in cells])]
    except NotImplementedError:
        logps = [float("nan")] * len(cells)
    grid, rows = {}, []
    for (n, d, (_, code)), out, lp in zip(cells, outputs, logps):
        first = re.search(r"\d[\d,]*", out)
        ok = first is not None and int(first.group().replace(",", "")) == code
        grid[f"{n}@{d:.2f}"] = float(ok)
        rows.append({"tokens": n, "depth": d, "code": code, "output": out, "correct": ok,
                     "code_logprob": lp})
    return {"score": statistics.fmean(grid.values()), "grid": grid, "lengths": lengths,
            "code_logprob": statistics.fmean(r["code_logprob"] for r in rows), "rows": rows}
