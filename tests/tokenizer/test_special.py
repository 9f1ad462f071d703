"""The special-token table: fixed offsets, ids at the top of the vocabulary."""

from __future__ import annotations

import pytest

from youtu.tokenizer.special import NAMED_SPECIAL, NUM_SPECIAL, special_id, special_tokens


def test_released_model_ids():
    assert special_id("<|begin_of_text|>", 128256) == 128000
    assert special_id("<|end_of_text|>", 128256) == 128001
    assert special_id("<|begin_of_text|>", 4096) == 3840
    assert special_id("<|end_of_text|>", 4096) == 3841


def test_table_is_complete_and_unique():
    tokens = special_tokens()
    assert len(tokens) == NUM_SPECIAL == len(set(tokens))
    for name in ["<|User|>", "<|Assistant|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                 "<tool_response>", "</tool_response>", "<tools>", "</tools>", "<analysis>",
                 "</analysis>", "<plan>", "</plan>", "<action>", "</action>", "<reflection>",
                 "</reflection>", "<summary>", "</summary>"]:
        assert name in NAMED_SPECIAL
    assert tokens[-1] == f"<|reserved_special_token_{NUM_SPECIAL - 1}|>"
    assert special_id(tokens[-1], 4096) == 4095


def test_unknown_names_and_tiny_vocab_are_refused():
    with pytest.raises(KeyError, match="not a special token"):
        special_id("<|bogus|>", 4096)
    with pytest.raises(KeyError):
        special_id("<|reserved_special_token_3|>", 4096)  # offset 3 is <|Assistant|>
    with pytest.raises(ValueError, match="no room"):
        special_id("<think>", 512)
