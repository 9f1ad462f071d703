"""Streaming text: split UTF-8 characters, stop-string hold-back, reasoning/content/tool routing."""

from __future__ import annotations

import pytest

from youtu.serve.textstream import ChatStreamSplitter, TextStream, partial_suffix


def test_partial_suffix():
    assert partial_suffix("abc<thi", "<think>") == 4
    assert partial_suffix("abc", "<think>") == 0
    assert partial_suffix("<think>", "<think>") == 0  # a whole marker is not a partial one


def test_incremental_decode_never_emits_half_a_character(tok):
    text = "Paris: 24°C, 晴れ ☀ — ok"
    ids = tok.encode(text)
    stream = TextStream(tok.decode)
    pieces = [stream.push([i]) for i in ids] + [stream.finish()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("stop", ["STOP", "P g", "a"])
def test_stop_strings_are_never_streamed(tok, stop):
    text = "alpha beta STOP gamma"
    stream = TextStream(tok.decode, [stop])
    pieces = [stream.push([i]) for i in tok.encode(text)] + [stream.finish()]
    assert "".join(pieces) == text[:text.index(stop)] == stream.final_text


def _split(chunks: list[str], prefix: str = "", tools: bool = False):
    s = ChatStreamSplitter(prefix, tools)
    out = [p for c in chunks for p in s.feed(c)] + s.finish()
    merged: list[list[str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1][1] += text
        else:
            merged.append([kind, text])
    return [tuple(m) for m in merged], s


def _chars(text: str) -> list[str]:
    return list(text)  # the worst case: one character per delta


def test_splitter_routes_reasoning_and_content_char_by_char():
    out, s = _split(_chars("<think>\nfirst, think\n</think>\n\nThe answer.\n"))
    assert out == [("reasoning", "first, think"), ("content", "The answer.")]
    out, _ = _split(_chars("plain text with a < sign"))
    assert out == [("content", "plain text with a < sign")]


def test_splitter_with_a_prefilled_empty_think_block():
    out, _ = _split(_chars("Hello there"), prefix="<think>\n\n</think>\n\n")
    assert out == [("content", "Hello there")]


def test_splitter_holds_back_tool_calls():
    text = 'Let me check.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    out, s = _split(_chars(text), tools=True)
    assert out == [("content", "Let me check.")] and s.saw_tool_call
    out, s = _split(_chars(text), tools=False)  # no tools offered: it is just text
    assert out == [("content", text)] and not s.saw_tool_call


def test_splitter_flushes_an_unterminated_think_block():
    out, _ = _split(["<think>\nstill going"])
    assert out == [("reasoning", "still going")]
