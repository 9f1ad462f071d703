"""The unit every data stage passes along: a document's text, its domain and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Document:
    """One document.

    Attributes:
        text: The text (for `chat` documents, the rendered conversation, used for dedup).
        domain: commonsense, stem, code, agent, chat, ... ('auto' until classified).
        source: Name of the source it was read from (manifest key).
        meta: Free-form, JSON-serialisable details (file, row, generator kind, ...). A `chat`
            document may carry `messages` (OpenAI chat dicts) and `tools` (JSON schemas): it is
            then tokenized with `youtu.tokenizer.chat.encode_chat` and keeps its loss mask.
            `allow_special` (default: True for `agent`, else False) says whether special-token
            strings in the text ("<tool_call>", "<think>") become their special ids: yes for
            synthesized trajectories we trust, never for web text.
    """

    text: str
    domain: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
