"""Answer extraction and judging rules for APTBench-format tasks: registries of pure functions.

A task config names one extraction rule (model output -> predicted answer or None) and one judge
((prediction, reference answer) -> correct?). The rules follow the APTBench release
(`../shared/aptbench/README.md`, protocol table) so our scores are comparable with the paper's:

    from youtu.eval.extract import EXTRACTORS, JUDGES
    pred = EXTRACTORS["letter_a_e"]("**B**) because ...")     # "B"
    JUDGES["equal"](pred, "B")                                  # True

As in the release, the generated text is stripped before extraction and the extracted answer is
stripped after it (`extract_answer` does both). Adding a rule is one function and one registry
entry; every task file can then name it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

Extractor = Callable[[str], str | None]
Judge = Callable[[str | None, Any], bool]


def _first_letter(text: str, letters: str) -> str | None:
    """The choice letter of an answer: the first standalone letter followed by `)`, `:` or a
    newline (either case); else the first capital one followed by a space; else a final one.

    APTBench's rule also takes a letter followed by a space, case-insensitively; taken first,
    that reads the article in "I think a good choice is C)" (or "A good choice is C)") as A.
    """
    text = text.replace("*", "")
    for pattern, flags in ((rf"\b([{letters}])[):\n]", re.IGNORECASE),
                           (rf"\b([{letters.upper()}])[ \t]", 0),
                           (rf"\b([{letters}])\s*$", re.IGNORECASE)):
        match = re.search(pattern, text, flags)
        if match:
            return match.group(1).upper()
    return None


def letter_a_e(text: str) -> str | None:
    """Choice letter A-E (case-insensitive, `*` ignored), upper-cased; None if there is none."""
    return _first_letter(text, "A-E")


def letter_a_d(text: str) -> str | None:
    """Choice letter A-D (case-insensitive, `*` ignored), upper-cased; None if there is none."""
    return _first_letter(text, "A-D")


def letter(text: str) -> str | None:
    """Any standalone letter followed by `)` or a newline, case kept (APTBench's generic MCQ
    rule, used by its software-engineering and deep-research planning tasks)."""
    match = re.search(r"\b([A-Za-z])[)\n]", text.replace("*", ""))
    return match.group(1) if match else None


def correct_wrong(text: str) -> str | None:
    """First whole word `correct` or `wrong` (lower-cased, `*` ignored): `incorrect` is neither."""
    match = re.search(r"\b(correct|wrong)\b", text.lower().replace("*", ""))
    return match.group(1) if match else None


def first_line(text: str) -> str | None:
    """Text up to the first newline, then up to the first `;` (tool names, commands, values).
    As in APTBench, a one-line text is kept whole: it is split at `;` only when it has a
    newline (`a; b` stays `a; b`, `a; b` + newline + `c` gives `a`)."""
    if "\n" not in text:
        return text
    return text.split("\n", 1)[0].split(";", 1)[0]


def before_bracket(text: str) -> str | None:
    """Text before the first `]`; None when the model never closed the bracket."""
    return text.split("]", 1)[0] if "]" in text else None


def before_paren(text: str) -> str | None:
    """Text before the first `)`; None when there is no `)` (citation sets like `1,3)`)."""
    return text.split(")", 1)[0] if ")" in text else None


FIRST_LINE_RULES = frozenset({"first_line"})
"""Rules that read only the first non-blank line: generation may stop at the next newline."""

EXTRACTORS: dict[str, Extractor] = {
    "letter_a_e": letter_a_e,
    "letter_a_d": letter_a_d,
    "letter": letter,
    "correct_wrong": correct_wrong,
    "first_line": first_line,
    "before_bracket": before_bracket,
    "before_paren": before_paren,
}


def extract_answer(rule: str, output: str) -> str | None:
    """Apply extraction `rule` to a model output the way the APTBench release does.

    Args:
        rule: A key of `EXTRACTORS`.
        output: Generated text (the continuation only, without the prompt).

    Returns:
        The stripped prediction, or None when the rule finds no answer.
    """
    if rule not in EXTRACTORS:
        raise ValueError(f"unknown extraction rule {rule!r}; known: {', '.join(EXTRACTORS)}")
    pred = EXTRACTORS[rule](output.strip())
    return pred.strip() if pred is not None else None


# ---------------------------------------------------------------------------------------------
# judges


def equal(pred: str | None, answer: Any) -> bool:
    """Exact string match with the reference (the reference is used as given, not stripped)."""
    return pred is not None and pred == str(answer)


def _as_set(value: Any) -> set[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return {str(v).strip() for v in items if str(v).strip()}


def set_equal(pred: str | None, answer: Any) -> bool:
    """Same set of comma-separated items (order, spaces and repeats ignored); the reference may
    be a list or a comma-separated string. An empty prediction never matches."""
    return pred is not None and bool(_as_set(pred)) and _as_set(pred) == _as_set(answer)


def _canonical(value: Any) -> Any:
    """JSON value with numbers compared by value (2 == 2.0) and object keys unordered; booleans
    are tagged so that `true` never equals `1` (Python says True == 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def json_equal(pred: str | None, answer: Any) -> bool:
    """Structural equality of JSON values (BFCL-style argument matching); an unparsable
    prediction is wrong. A string reference is parsed as JSON first."""
    if pred is None:
        return False
    try:
        got = json.loads(pred)
    except json.JSONDecodeError:
        return False
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except json.JSONDecodeError:
            return False
    return _canonical(got) == _canonical(answer)


JUDGES: dict[str, Judge] = {"equal": equal, "set_equal": set_equal, "json_equal": json_equal}


def judge_answer(judge: str, pred: str | None, answer: Any) -> bool:
    """Apply judge `judge` (a key of `JUDGES`) to a prediction and the reference answer."""
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; known: {', '.join(JUDGES)}")
    return JUDGES[judge](pred, answer)
