"""Bits per byte per domain on held-out text (tokenizer-independent language-model quality).

    docs = heldout_documents(docs_per_domain=8)          # or load_documents("heldout.jsonl")
    run_bpb(lm, docs)                                    # {'commonsense': 1.9, 'code': 1.1, ...}

bits/byte = -sum log2 p(token) / UTF-8 bytes, over every token of every document (rolling
windows of the model's context, `LM.loglikelihood_rolling`), pooled per domain.

Held-out text must be text no training stage saw. A real held-out split of the training
sources is best: pass it as JSONL files with `text` and `domain` fields (`[eval] bpb_data`).
Without one, `heldout_documents` builds a fixed set from sources the data pipeline does not
use: `stem` = our procedural word problems with worked answers at held-out seeds
(`tasks/math_word.py`), `code` = HumanEval prompts with their canonical solutions,
`commonsense` = the prose paragraphs (dataset and paper descriptions) of the task READMEs that
ship with lm-eval 0.4.13, `agent` = scripted trajectories of our environments at held-out seeds
rendered as mid-training text. Domains whose source is not installed are left out (logged).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
from pathlib import Path
from typing import Any

from youtu.eval.harness import LM
from youtu.eval.tasks.math_word import EVAL_SEED, make_problem

logger = logging.getLogger(__name__)


def load_documents(path: str | Path, per_domain: int = 0) -> dict[str, list[str]]:
    """{domain: texts} from a JSONL file or a folder of them (`text` + `domain` per line)."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise FileNotFoundError(f"bpb_data {path} has no .jsonl files")
    docs: dict[str, list[str]] = {}
    for f in files:
        for i, line in enumerate(f.read_text().splitlines()):
            if not line.strip():
                continue
            d = json.loads(line)
            if "text" not in d or "domain" not in d:
                raise ValueError(f"{f}:{i + 1}: a held-out document needs 'text' and 'domain'")
            bucket = docs.setdefault(d["domain"], [])
            if not per_domain or len(bucket) < per_domain:
                bucket.append(d["text"])
    return docs


def _stem(n: int, chars: int) -> list[str]:
    docs, seed = [], EVAL_SEED + 500_000  # apart from the seeds the math task evaluates
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p) for p in parts) < chars:
            parts.append(make_problem(seed).text)
            seed += 1
        docs.append("\n\n".join(parts))
    return docs


def _code(n: int) -> list[str]:
    from youtu.eval.tasks.humaneval import load_problems

    return [p["prompt"] + p["canonical_solution"] for p in load_problems(n)]


def _commonsense(n: int, chars: int) -> list[str]:
    import lm_eval

    paragraphs = []
    for readme in sorted((Path(lm_eval.__file__).parent / "tasks").rglob("README.md")):
        for p in re.split(r"\n\s*\n", readme.read_text(errors="ignore")):
            p = " ".join(p.split())
            # prose only: no markup, links, tables, code or citations
            if len(p) > 300 and not re.search(r"[`<>\[\]{}|=#*@]|http", p):
                paragraphs.append(p)
    docs, cur = [], ""
    for p in paragraphs:
        cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= chars:
            docs.append(cur)
            cur = ""
        if len(docs) == n:
            break
    return docs


def _agent(n: int) -> list[str]:
    from youtu.agentic.envs import ENVIRONMENTS
    from youtu.agentic.render import render_text

    docs = []
    names = sorted(ENVIRONMENTS)
    for i in range(n):
        env = ENVIRONMENTS[names[i % len(names)]]
        task = env.generate(EVAL_SEED + 700_000 + i)
        docs.append(render_text(env.solve(task, random.Random(i))))
    return docs


def heldout_documents(docs_per_domain: int = 8, chars: int = 2000) -> dict[str, list[str]]:
    """The built-in held-out set (see the module docstring), ~`chars` characters a document.
    Built once per process: the agent documents run the scripted teacher, sandbox included
    (in the H100 run of 2026-12-07 the bpb group took 3.7-6.8 s a model, 0.2-0.3 s of it
    scoring, for each of the recipe's three models)."""
    return {domain: list(texts) for domain, texts in _heldout(docs_per_domain, chars).items()}


@functools.lru_cache(maxsize=4)
def _heldout(docs_per_domain: int, chars: int) -> dict[str, tuple[str, ...]]:
    sources: dict[str, Any] = {"commonsense": lambda: _commonsense(docs_per_domain, chars),
                               "stem": lambda: _stem(docs_per_domain, chars),
                               "code": lambda: _code(docs_per_domain),
                               "agent": lambda: _agent(docs_per_domain)}
    docs = {}
    for domain, build in sources.items():
        try:
            docs[domain] = tuple(build())
        except ImportError as e:
            logger.warning("bits/byte: no held-out %s text (%s); domain left out", domain, e)
    return docs


def run_bpb(lm: LM, docs: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """{domain: {'bits_per_byte', 'tokens', 'bytes', 'docs'}}, pooled over the documents."""
    out = {}
    for domain, texts in docs.items():
        if not texts:
            continue
        res = lm.loglikelihood_rolling(texts)
        nats = -sum(r.logprob for r in res)
        n_bytes = sum(r.num_bytes for r in res)
        out[domain] = {"bits_per_byte": nats / (math.log(2) * n_bytes),
                       "tokens": sum(r.num_tokens for r in res), "bytes": n_bytes,
                       "docs": len(texts)}
        logger.info("bpb/%s: %.4f (%d docs, %d bytes)", domain, out[domain]["bits_per_byte"],
                    len(texts), n_bytes)
    return out
