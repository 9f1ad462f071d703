"""Domain classification: rules on clear cases, and the trained naive Bayes on held-out docs."""

from __future__ import annotations

import random

import pytest

from youtu.data.domain import NaiveBayesClassifier, classify_rules
from youtu.data.sources import embedded_corpus
from youtu.data.stem import worksheet

CODE = '''import os


def walk(root):
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            yield from walk(path)
        else:
            yield path
'''
PROSE = ("The library opened in the spring. Visitors came from the nearby villages to read "
         "newspapers, borrow novels and attend the evening lectures about local history.")
MATH = ("Solve 3x + 7 = 22. Subtract 7 from both sides: 3x = 15. Divide by 3: x = 5. "
        "Check: 3 * 5 + 7 = 22.")
AGENT = 'Plan the search.<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>'


@pytest.mark.parametrize("text,domain", [(CODE, "code"), (PROSE, "commonsense"),
                                         (MATH, "stem"), (AGENT, "agent"),
                                         ("int main() {\n  return 0;\n}\n", "code")])
def test_rules(text, domain):
    assert classify_rules(text) == domain


def test_rules_on_the_embedded_corpus_are_mostly_right():
    docs = [d for d in embedded_corpus(0, code_chars=150_000, prose_chars=100_000,
                                       stem_chars=30_000) if len(d.text) > 500]
    right = sum(classify_rules(d.text) == d.domain for d in docs)
    assert right / len(docs) > 0.85


def test_naive_bayes_learns_the_domains():
    docs = list(embedded_corpus(0, code_chars=150_000, prose_chars=100_000, stem_chars=40_000))
    clf = NaiveBayesClassifier.fit((d.text, d.domain) for d in docs)
    assert clf.labels == ["code", "commonsense", "stem"]
    assert clf.predict(CODE) == "code"
    assert clf.predict(PROSE) == "commonsense"
    assert clf.predict(worksheet(random.Random(99), 3)[0]) == "stem"
    assert clf.predict(AGENT) == "agent"  # markup rule first
    with pytest.raises(ValueError, match="at least 2 domains"):
        NaiveBayesClassifier.fit([("a", "code")])
