"""The special-token table: the one place that says which special token sits at which id.

Special tokens occupy the LAST `NUM_SPECIAL` (256) ids of the vocabulary, so their ids depend only
on the vocabulary size: `id = vocab_size - 256 + offset`. For the Youtu-LLM-2B vocabulary of
128,256 that gives `<|begin_of_text|>` = 128000 and `<|end_of_text|>` = 128001 (the released
model's ids); for the 4,096 CPU demo vocabulary, 3840 and 3841. Offsets not named below are
`<|reserved_special_token_{offset}|>`, kept free so a later token can be added without moving ids.

    >>> special_id("<think>", 128256)
    128004

Never reorder or remove an entry: every checkpoint and token shard depends on these offsets.
"""

from __future__ import annotations

NUM_SPECIAL = 256
"""Ids reserved for special tokens at the top of the vocabulary."""

NAMED_SPECIAL: tuple[str, ...] = (
    "<|begin_of_text|>",  # 0: BOS, starts every document and every chat
    "<|end_of_text|>",  # 1: EOS and PAD; ends documents and assistant turns
    "<|User|>",  # 2: starts a user turn (and a tool-result turn)
    "<|Assistant|>",  # 3: starts an assistant turn
    "<think>",  # 4: reasoning block
    "</think>",  # 5
    "<tool_call>",  # 6: one function call as JSON {"name", "arguments"}
    "</tool_call>",  # 7
    "<tool_response>",  # 8: a tool result inside a user turn
    "</tool_response>",  # 9
    "<tools>",  # 10: tool (function schema) descriptions in the system part
    "</tools>",  # 11
    "<analysis>",  # 12: Agentic-CoT phases: analysis -> plan -> action -> reflection -> summary
    "</analysis>",  # 13
    "<plan>",  # 14
    "</plan>",  # 15
    "<action>",  # 16
    "</action>",  # 17
    "<reflection>",  # 18
    "</reflection>",  # 19
    "<summary>",  # 20
    "</summary>",  # 21
)

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = EOS


def special_tokens() -> list[str]:
    """All `NUM_SPECIAL` special token strings, in offset order (named first, then reserved)."""
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(len(NAMED_SPECIAL), NUM_SPECIAL)]
    return [*NAMED_SPECIAL, *reserved]


def special_offset(name: str) -> int:
    """Offset of special token `name` inside the special block (0 for BOS)."""
    if name in NAMED_SPECIAL:
        return NAMED_SPECIAL.index(name)
    prefix, suffix = "<|reserved_special_token_", "|>"
    if name.startswith(prefix) and name.endswith(suffix):
        index = name[len(prefix):-len(suffix)]
        if index.isdigit() and len(NAMED_SPECIAL) <= int(index) < NUM_SPECIAL:
            return int(index)
    raise KeyError(f"{name!r} is not a special token; named ones are: {', '.join(NAMED_SPECIAL)}")


def special_id(name: str, vocab_size: int) -> int:
    """Token id of special token `name` in a vocabulary of `vocab_size` entries."""
    if vocab_size <= NUM_SPECIAL + 256:
        raise ValueError(f"vocab_size={vocab_size} leaves no room for 256 bytes + 256 specials")
    return vocab_size - NUM_SPECIAL + special_offset(name)
