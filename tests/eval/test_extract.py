"""Extraction rules and judges on tricky model outputs (the APTBench protocol table)."""

from __future__ import annotations

import pytest

from youtu.eval.extract import (EXTRACTORS, JUDGES, extract_answer, judge_answer, json_equal,
                                set_equal)


@pytest.mark.parametrize("output, expected", [
    ("B) Calculation_Execution_Tool", "B"),
    ("**B**) because", "B"),               # markdown bold is removed first
    ("b)", "B"),                           # case-insensitive, upper-cased
    ("D", "D"),                            # a bare letter at the end
    ("E\n\nFor the following", "E"),
    ("A: Concept", "A"),
    ("The answer is C)", "C"),             # 'The' holds an e, but not as a standalone letter
    ("F) nothing", None),                  # outside A-E
    ("E.", None),                          # a period is not a delimiter
    ("BC)", None),                         # a letter inside a word is not a choice
    ("I think a good choice is C)", "C"),  # the article 'a' is not choice A
    ("A good choice is C) because", "C"),  # nor a capital one opening the sentence
    ("a good one", None),
    ("B because it adds", "B"),            # a capital letter and a space, without `)`
    ("The answer: b", "B"),                # a final letter
    ("", None),
])
def test_letter_a_e(output, expected):
    assert extract_answer("letter_a_e", output) == expected


def test_letter_a_d_rejects_e():
    assert extract_answer("letter_a_d", "I think a good choice is D)") == "D"
    assert extract_answer("letter_a_d", "E) then A)") == "A"
    assert extract_answer("letter_a_d", "E)") is None
    assert extract_answer("letter_a_e", "E) then A)") == "E"


def test_letter_generic_keeps_case_and_needs_paren_or_newline():
    assert extract_answer("letter", "c) foo") == "c"
    assert extract_answer("letter", "x\n") is None  # stripped first: the newline is gone
    assert extract_answer("letter", "x\nmore") == "x"
    assert extract_answer("letter", "A: foo") is None


@pytest.mark.parametrize("output, expected", [
    ("correct##", "correct"),
    ("**Wrong**##", "wrong"),
    ("incorrect##", None),                 # not a whole word
    ("wrong, not correct", "wrong"),       # the first one wins
    ("Correctly done", None),
    ("", None),
])
def test_correct_wrong(output, expected):
    assert extract_answer("correct_wrong", output) == expected


@pytest.mark.parametrize("output, expected", [
    ("PerformanceManager_setEmployeeGoals\n```\n", "PerformanceManager_setEmployeeGoals"),
    ("  math.triangle_area_heron  \n```", "math.triangle_area_heron"),
    ("foo; bar\nbaz", "foo"),
    ('["", true]\n```', '["", true]'),
    ("no newline at all", "no newline at all"),
    ("foo; bar", "foo; bar"),              # one line: APTBench splits at `;` only with a newline
    ("\n\nname", "name"),                  # the output is stripped before the rule
    ("", ""),
])
def test_first_line(output, expected):
    assert extract_answer("first_line", output) == expected


def test_bracket_and_paren_rules():
    assert extract_answer("before_bracket", "Paris] and more]") == "Paris"
    assert extract_answer("before_bracket", "Paris") is None
    assert extract_answer("before_paren", "1,3) rest") == "1,3"
    assert extract_answer("before_paren", "1,3") is None
    assert extract_answer("before_paren", ")") == ""


def test_judges():
    assert judge_answer("equal", "B", "B")
    assert not judge_answer("equal", None, "B")
    assert not judge_answer("equal", "b", "B")
    assert set_equal("3, 1", ["1", "3"])
    assert set_equal("3,1,1", "1,3")
    assert not set_equal("1", ["1", "3"])
    assert not set_equal("", [])
    assert json_equal('{"a": [1, 2.0], "b": "x"}', '{"b": "x", "a": [1.0, 2]}')
    assert not json_equal('{"a": [2, 1]}', {"a": [1, 2]})   # list order matters
    assert not json_equal("{not json", {"a": 1})
    assert not json_equal("true", 1)                        # bool is not a number


def test_unknown_rule_and_judge_are_clear_errors():
    with pytest.raises(ValueError, match="unknown extraction rule 'nope'.*letter_a_e"):
        extract_answer("nope", "A")
    with pytest.raises(ValueError, match="unknown judge"):
        judge_answer("nope", "A", "A")
    assert set(EXTRACTORS) >= {"letter_a_e", "letter_a_d", "correct_wrong", "first_line",
                               "before_bracket", "before_paren"}
    assert set(JUDGES) >= {"equal", "set_equal"}
