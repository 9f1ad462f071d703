"""Token ids -> text while streaming: incremental detokenization, stop strings, think/tool tags.

    stream = TextStream(tok.decode, stop=["\\n\\n"])
    for delta in engine.submit(ids, params):
        print(stream.push(delta.token_ids), end="")
    print(stream.finish(stop_reason))

`TextStream` never emits half a UTF-8 character (byte-level BPE splits them across tokens) nor
text that might turn out to be the start of a stop string. `ChatStreamSplitter` routes the
assistant's text into reasoning (inside `<think>...</think>`) and content, and holds back
everything from the first `<tool_call>` on, so a client sees reasoning and content deltas while
tool calls arrive parsed at the end (the way the OpenAI API delivers them).
"""

from __future__ import annotations

from collections.abc import Callable

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_OPEN = "<tool_call>"
REPLACEMENT = "\ufffd"


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class TextStream:
    """Incremental detokenizer with stop-string hold-back.

    Args:
        decode: token ids -> text (special tokens kept: the chat layer needs `<think>`).
        stop: stop strings; text from the first one on is never emitted.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: list[str] | None = None):
        self.decode = decode
        self.stop = list(stop or [])
        self.ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] decode to text already appended
        self._read = 0
        self.text = ""  # everything decoded so far
        self.emitted = 0  # characters of `text` handed out

    def _decode_new(self, final: bool) -> None:
        before = self.decode(self.ids[self._prefix:self._read])
        after = self.decode(self.ids[self._prefix:])
        # A trailing U+FFFD means a character is still split across tokens: wait for the rest
        # (vLLM's detokenize_incrementally rule).
        if len(after) > len(before) and (final or not after.endswith(REPLACEMENT)):
            self.text += after[len(before):]
            self._prefix, self._read = self._read, len(self.ids)

    def _stop_cut(self) -> int | None:
        hits = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        return min(hits) if hits else None

    def push(self, ids: list[int]) -> str:
        """Add generated ids; return the text that is now safe to show."""
        self.ids += ids
        self._decode_new(final=False)
        cut = self._stop_cut()
        if cut is not None:
            end = cut
        else:
            end = len(self.text) - max((partial_suffix(self.text, s) for s in self.stop), default=0)
        end = max(end, self.emitted)
        out = self.text[self.emitted:end]
        self.emitted = end
        return out

    def finish(self) -> str:
        """The rest of the text (up to the first stop string, if one occurred)."""
        self._decode_new(final=True)
        cut = self._stop_cut()
        end = len(self.text) if cut is None else max(cut, self.emitted)
        out = self.text[self.emitted:end]
        self.emitted = end
        return out

    @property
    def final_text(self) -> str:
        """All text up to the first stop string (call after `finish`)."""
        cut = self._stop_cut()
        return self.text if cut is None else self.text[:cut]


class ChatStreamSplitter:
    """Split streamed assistant text into ('reasoning' | 'content', text) deltas.

    Args:
        prefix: assistant text the prompt already holds (e.g. `<think>\\n\\n</think>\\n\\n` when
            thinking is off, `<tool_call>` when a tool call is forced); it is parsed, not shown.
        tools: whether tool calls are parsed; then text from `<tool_call>` on is held back.
    """

    def __init__(self, prefix: str = "", tools: bool = False):
        self.tools = tools
        self.mode = "start"  # start -> reasoning -> content -> tool
        self.buf = ""
        self._started = False  # has the current block shown non-blank text yet
        self.feed(prefix, emit=False)

    def _emit_until(self, out: list[tuple[str, str]], kind: str, end: int, at_tag: bool) -> None:
        """Emit buf[:end] as `kind` and keep buf[end:]. A block's edges are trimmed (as
        `parse_tool_calls` trims them): leading blanks of a block are dropped, trailing blanks
        are held back until more text follows, and dropped when a tag (`at_tag`) ends the block."""
        body, rest = self.buf[:end], self.buf[end:]
        if not self._started:
            body = body.lstrip()
        shown = body.rstrip()
        if shown:
            out.append((kind, shown))
            self._started = True
        self.buf = rest if at_tag else body[len(shown):] + rest

    def feed(self, text: str, emit: bool = True) -> list[tuple[str, str]]:
        self.buf += text
        out: list[tuple[str, str]] = []
        while True:
            if self.mode == "start":
                stripped = self.buf.lstrip()
                if stripped.startswith(THINK_OPEN):
                    self.buf = stripped[len(THINK_OPEN):]
                    self.mode, self._started = "reasoning", False
                elif THINK_OPEN.startswith(stripped):
                    break  # empty or a partial "<think": wait
                else:
                    self.mode, self._started = "content", False
            elif self.mode == "reasoning":
                i = self.buf.find(THINK_CLOSE)
                if i >= 0:
                    self._emit_until(out, "reasoning", i, at_tag=True)
                    self.buf = self.buf[len(THINK_CLOSE):]
                    self.mode, self._started = "content", False
                else:
                    keep = partial_suffix(self.buf, THINK_CLOSE)
                    self._emit_until(out, "reasoning", len(self.buf) - keep, at_tag=False)
                    break
            elif self.mode == "content":
                i = self.buf.find(TOOL_OPEN) if self.tools else -1
                if i >= 0:
                    self._emit_until(out, "content", i, at_tag=True)
                    self.mode = "tool"
                else:
                    keep = partial_suffix(self.buf, TOOL_OPEN) if self.tools else 0
                    self._emit_until(out, "content", len(self.buf) - keep, at_tag=False)
                    break
            else:  # tool: held back for the final parse
                break
        return out if emit else []

    def finish(self) -> list[tuple[str, str]]:
        """Flush what was held back (a partial tag that never completed); trailing blanks go."""
        if self.mode == "tool":
            return []
        kind = "reasoning" if self.mode == "reasoning" else "content"
        text = self.buf if self._started else self.buf.lstrip()
        self.buf = ""
        return [(kind, text.rstrip())] if text.strip() else []

    @property
    def saw_tool_call(self) -> bool:
        return self.mode == "tool"
