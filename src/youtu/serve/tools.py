"""Tools `youtu agent` and `youtu chat` offer the model: sandboxed Python, search over local
documents, and the tools of a synthesis environment (`youtu.agentic.envs`).

    tools = ToolSet([python_tool(), search_tool(DocSearch.from_folder("docs/"))])
    tools.schemas                        # OpenAI JSON schemas for the request
    tools.call("search_docs", '{"query": "rope theta"}')   # -> observation text

A tool call never raises into the loop: unknown tools, bad JSON arguments and tool failures come
back as observation text starting with "error:", which is what the model should see.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Passage size for document search: a few sentences, so a result fits a small context.
PASSAGE_CHARS = 800
# BM25 constants (Robertson & Zaragoza 2009, the usual defaults).
BM25_K1, BM25_B = 1.5, 0.75
DOC_SUFFIXES = (".txt", ".md", ".rst")
# Observations are cut to this many characters so one tool result cannot fill the context.
MAX_OBSERVATION_CHARS = 4000


@dataclass
class Tool:
    schema: dict[str, Any]
    """OpenAI function schema {"type": "function", "function": {name, description, parameters}}."""
    run: Callable[[dict[str, Any]], str]
    """arguments -> observation text."""

    @property
    def name(self) -> str:
        return self.schema["function"]["name"]


class ToolSet:
    """Named tools; `call` executes one call given its JSON argument string."""

    def __init__(self, tools: list[Tool]):
        self.tools = {t.name: t for t in tools}

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def call(self, name: str, arguments: str | dict[str, Any]) -> str:
        tool = self.tools.get(name)
        if tool is None:
            return f"error: unknown tool {name!r}; available: {', '.join(self.tools)}"
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as e:
            return f"error: arguments are not valid JSON ({e.msg})"
        if not isinstance(args, dict):
            return "error: arguments must be a JSON object"
        try:
            out = tool.run(args)
        except (KeyError, TypeError, ValueError, OSError, RuntimeError) as e:
            return f"error: {name} failed: {type(e).__name__}: {e}"
        if len(out) > MAX_OBSERVATION_CHARS:
            out = out[:MAX_OBSERVATION_CHARS] + f"\n... [{len(out) - MAX_OBSERVATION_CHARS} more characters cut]"
        return out


def _schema(name: str, description: str, properties: dict[str, dict], required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object", "properties": properties,
                                                            "required": required}}}


# ---------------------------------------------------------------------------------------------
# python


def python_tool(timeout_s: float = 10.0, memory_mb: int = 512) -> Tool:
    """Run Python in the project sandbox (separate process, rlimits, no network)."""
    from youtu.agentic.sandbox import run_python

    def run(args: dict[str, Any]) -> str:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            return "error: 'code' must be a non-empty string"
        r = run_python(code, timeout_s=timeout_s, memory_mb=memory_mb)
        status = "timed out" if r.timed_out else f"exit code {r.returncode}"
        out = f"{status}\nstdout:\n{r.stdout}"
        return out + (f"\nstderr:\n{r.stderr}" if r.stderr else "")

    return Tool(_schema("python", "Run a Python 3 program in a sandbox (no network, "
                        f"{timeout_s:g} s limit) and return its exit code, stdout and stderr. "
                        "Print what you need to see.",
                        {"code": {"type": "string", "description": "the program"}}, ["code"]), run)


# ---------------------------------------------------------------------------------------------
# local document search


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class DocSearch:
    """BM25 over passages (~PASSAGE_CHARS, split at blank lines) of local text files."""

    def __init__(self, passages: list[tuple[str, str]]):
        self.passages = passages  # (source, text)
        self.tf = [Counter(_words(text)) for _, text in passages]
        self.lengths = [sum(c.values()) for c in self.tf]
        self.avg_len = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(passages)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    @classmethod
    def from_folder(cls, folder: str | Path) -> DocSearch:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"document folder {folder} does not exist (set serve.docs)")
        passages = []
        for path in sorted(p for p in folder.rglob("*") if p.suffix in DOC_SUFFIXES):
            text = path.read_text(errors="replace")
            chunk = ""
            for para in re.split(r"\n\s*\n", text):
                if chunk and len(chunk) + len(para) > PASSAGE_CHARS:
                    passages.append((str(path.relative_to(folder)), chunk.strip()))
                    chunk = ""
                chunk += para + "\n\n"
            if chunk.strip():
                passages.append((str(path.relative_to(folder)), chunk.strip()))
        return cls(passages)

    def search(self, query: str, k: int = 3) -> list[tuple[float, str, str]]:
        """Top-k (score, source, passage) for `query`; passages without a query word are skipped."""
        terms = _words(query)
        scored = []
        for i, tf in enumerate(self.tf):
            score = 0.0
            for w in terms:
                f = tf.get(w, 0)
                if f:
                    norm = 1 - BM25_B + BM25_B * self.lengths[i] / self.avg_len
                    score += self.idf[w] * f * (BM25_K1 + 1) / (f + BM25_K1 * norm)
            if score > 0:
                scored.append((score, i))
        scored.sort(reverse=True)
        return [(s, *self.passages[i]) for s, i in scored[:k]]


def search_tool(index: DocSearch) -> Tool:
    def run(args: dict[str, Any]) -> str:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return "error: 'query' must be a non-empty string"
        k = int(args.get("k", 3))
        hits = index.search(query, max(1, min(k, 10)))
        if not hits:
            return "no passage matches the query"
        return "\n\n".join(f"[{i + 1}] {src}\n{text}" for i, (_, src, text) in enumerate(hits))

    return Tool(_schema("search_docs", f"Search the local documents ({len(index.passages)} "
                        "passages) and return the best matching passages with their file names.",
                        {"query": {"type": "string", "description": "keywords"},
                         "k": {"type": "integer", "description": "passages to return (1-10)"}},
                        ["query"]), run)


# ---------------------------------------------------------------------------------------------
# synthesis environments


def env_tools(env: Any, task: Any, state: Any) -> list[Tool]:
    """The tools an environment offers for `task`, bound to the episode's `state`."""
    def bind(name: str) -> Callable[[dict[str, Any]], str]:
        return lambda args: env.call_tool(task, state, name, args)

    return [Tool(schema, bind(schema["function"]["name"])) for schema in env.tools_for(task)]
