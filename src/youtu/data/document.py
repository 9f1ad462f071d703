"""The unit every data stage passes along: a document's text, its domain and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRUSTED_SPECIAL = "trusted_special"
"""`Document.meta` key: True (the bool, nothing else) lets prepare encode special-token strings
in the text as special ids. Set only by producers of trusted text, e.g. synthesized trajectories:
`Document(text, "agent", source, meta={TRUSTED_SPECIAL: True})`."""


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
            `meta[TRUSTED_SPECIAL] is True` (key "trusted_special") makes special-token strings
            in the text ("<tool_call>", "<think>", "<|end_of_text|>") encode as their special
            ids. Only a trusted producer sets it (the pipeline's synthesized trajectories);
            every other document, whatever its domain, is encoded with those strings as plain
            text, so a web page that the classifier labels `agent` cannot inject turn or
            tool-call tokens. Source readers never copy record fields into `meta`.
    """

    text: str
    domain: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
