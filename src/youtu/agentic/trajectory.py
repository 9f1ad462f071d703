"""The trajectory schema: one verified agent episode, as stored in synthesis JSONL shards.

    traj = Trajectory.from_dict(json.loads(line))   # validates
    for traj in load_trajectories("runs/tiny/synth"): ...

A trajectory is `id, domain, task, tools, messages, phases, outcome, provenance` (DESIGN.md):

- `task`: the generated `Task` (prompt, exact answer, the gold solution `steps` with the tool
  chosen at each step, plausible wrong `near_misses`). Evaluation probes (planning, action,
  feedback) are built from these fields, so they are first-class rather than buried in `meta`.
- `messages`: OpenAI chat format. Assistant turns carry `reasoning_content` (the thinking), an
  optional `content` and OpenAI `tool_calls`; tool results are `role="tool"` messages with the
  `tool_call_id` they answer.
- `phases`: the Agentic-CoT segmentation (analysis -> plan -> action -> reflection -> summary).
  Each phase names the assistant message it lives in; that message's `reasoning_content` is
  exactly the concatenation of its phases as `<analysis>...</analysis>` blocks (the tokenizer
  has these tags as special tokens), so the structure survives rendering to text.
- `outcome`: how the episode was verified (`checker`), the verdict and the answer checked.
- `provenance`: teacher, seed, difficulty, env version, injected mistakes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("analysis", "plan", "action", "reflection", "summary")
"""Agentic-CoT phases in their canonical order."""

DOMAINS = ("math", "code", "tools", "research", "swe", "pydocs")
"""Trajectory domains = environment names. The data pipeline files all of them under `agent`."""

ROLES = ("system", "user", "assistant", "tool")

_PHASE_RE = re.compile(r"<(analysis|plan|action|reflection|summary)>\n?(.*?)\n?</\1>", re.S)


@dataclass
class Step:
    """One step of a task's gold solution: what to do, with which tool, and what comes back."""

    description: str
    """What the step does, in words ("Convert 3 mi to km")."""
    tool: str = ""
    """Tool the step calls; "" for a pure reasoning step."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Tool arguments (JSON object) when `tool` is set."""
    result: str = ""
    """The step's result (tool observation or intermediate value)."""


@dataclass
class Task:
    """A generated task. `steps[i]` is the correct next step after steps `0..i-1`."""

    id: str
    env: str
    seed: int
    difficulty: int
    prompt: str
    answer: str
    """The exact reference answer (as text the environment's checker accepts)."""
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    near_misses: list[str] = field(default_factory=list)
    """Plausible wrong answers (sign slips, off-by-one, distractor entities); all rejected."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        d = dict(d)
        d["steps"] = [Step(**s) for s in d.get("steps", [])]
        return cls(**d)


@dataclass
class Verdict:
    """A checker's judgement of one answer."""

    correct: bool
    reward: float
    detail: str
    checker: str = ""
    """Which check produced it, e.g. 'math/sympy-equal', 'code/hidden-tests'."""


@dataclass
class Phase:
    """One Agentic-CoT phase inside the reasoning of assistant message `message`."""

    name: str
    text: str
    message: int
    mistake: bool = False
    """True on the phases of a controlled mistake (the failed branch): not the correct step."""


@dataclass
class Outcome:
    """How a trajectory was verified."""

    verified: bool
    reward: float
    checker: str
    detail: str = ""
    answer: str = ""
    """The answer that was checked (final boxed value, final source file, ...)."""


@dataclass
class Trajectory:
    """One agent episode; see the module docstring for the field contract."""

    id: str
    domain: str
    task: Task
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    phases: list[Phase]
    outcome: Outcome
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "domain": self.domain, "task": self.task.to_dict(),
                "tools": self.tools, "messages": self.messages,
                "phases": [asdict(p) for p in self.phases], "outcome": asdict(self.outcome),
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict[str, Any], validate: bool = True) -> Trajectory:
        """Build from a dict (one JSONL line); raises ValueError naming every schema problem."""
        missing = [k for k in ("id", "domain", "task", "messages") if k not in d]
        if missing:
            raise ValueError(f"trajectory is missing required keys: {', '.join(missing)}")
        traj = cls(id=d["id"], domain=d["domain"], task=Task.from_dict(d["task"]),
                   tools=list(d.get("tools", [])), messages=list(d["messages"]),
                   phases=[Phase(**p) for p in d.get("phases", [])],
                   outcome=Outcome(**d.get("outcome", {"verified": False, "reward": 0.0,
                                                       "checker": ""})),
                   provenance=dict(d.get("provenance", {})))
        if validate:
            traj.validate()
        return traj

    def validate(self) -> None:
        """Raise ValueError listing every way this trajectory breaks the schema."""
        problems = validation_errors(self)
        if problems:
            raise ValueError(f"invalid trajectory {self.id!r}: " + "; ".join(problems))

    def tool_calls(self) -> list[dict[str, Any]]:
        """Every tool call of the episode in order, as {'name', 'arguments': dict}."""
        return [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                for m in self.messages if m["role"] == "assistant"
                for c in m.get("tool_calls") or []]

    def content_hash(self) -> str:
        """Hash of the conversation (for dedup): same messages -> same hash."""
        blob = json.dumps(self.messages, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def format_phases(phases: list[tuple[str, str]]) -> str:
    """[(name, text), ...] -> the reasoning text `<analysis>\\ntext\\n</analysis>\\n<plan>...`."""
    return "\n".join(f"<{name}>\n{text}\n</{name}>" for name, text in phases)


def parse_phases(reasoning: str) -> list[tuple[str, str]]:
    """Inverse of `format_phases`: the (name, text) blocks found in a reasoning string."""
    return [(m.group(1), m.group(2)) for m in _PHASE_RE.finditer(reasoning or "")]


def validation_errors(traj: Trajectory) -> list[str]:
    """Every schema problem of `traj` (empty list = valid)."""
    errs: list[str] = []
    if not traj.id:
        errs.append("empty id")
    if traj.domain not in DOMAINS:
        errs.append(f"domain {traj.domain!r} is not one of {DOMAINS}")
    tool_names = {t.get("function", {}).get("name") for t in traj.tools}
    for t in traj.tools:
        if t.get("type") != "function" or "name" not in t.get("function", {}):
            errs.append(f"tool schema {t!r} is not an OpenAI function schema")
    msgs = traj.messages
    if not any(m.get("role") == "user" for m in msgs):
        errs.append("no user message")
    pending: set[str] = set()
    for i, m in enumerate(msgs):
        role = m.get("role")
        if role not in ROLES:
            errs.append(f"messages[{i}]: role {role!r} is not one of {ROLES}")
            continue
        if not isinstance(m.get("content", ""), str):
            errs.append(f"messages[{i}]: content must be a string")
        if role == "system" and i != 0:
            errs.append(f"messages[{i}]: a system message may only come first")
        if role == "tool":
            cid = m.get("tool_call_id")
            if cid not in pending:
                errs.append(f"messages[{i}]: tool result {cid!r} answers no open tool call")
            pending.discard(cid)
            continue
        if pending and role != "tool":
            errs.append(f"messages[{i}]: tool calls {sorted(pending)} were never answered")
            pending = set()
        for call in m.get("tool_calls") or []:
            if role != "assistant":
                errs.append(f"messages[{i}]: only assistant messages may call tools")
            fn = call.get("function", {})
            if fn.get("name") not in tool_names:
                errs.append(f"messages[{i}]: calls unknown tool {fn.get('name')!r}")
            try:
                if not isinstance(json.loads(fn.get("arguments", "")), dict):
                    errs.append(f"messages[{i}]: arguments of {fn.get('name')!r} are not an object")
            except (json.JSONDecodeError, TypeError):
                errs.append(f"messages[{i}]: arguments of {fn.get('name')!r} are not JSON")
            pending.add(call.get("id"))
    if pending:
        errs.append(f"tool calls {sorted(pending)} were never answered")
    if msgs and msgs[-1].get("role") != "assistant":
        errs.append("the last message must be the assistant's final reply")
    for k, p in enumerate(traj.phases):
        if p.name not in PHASES:
            errs.append(f"phases[{k}]: {p.name!r} is not one of {PHASES}")
        if not 0 <= p.message < len(msgs) or msgs[p.message].get("role") != "assistant":
            errs.append(f"phases[{k}]: message {p.message} is not an assistant message")
    by_message: dict[int, list[tuple[str, str]]] = {}
    for p in traj.phases:
        by_message.setdefault(p.message, []).append((p.name, p.text))
    for i, blocks in by_message.items():
        if 0 <= i < len(msgs) and msgs[i].get("reasoning_content", "") != format_phases(blocks):
            errs.append(f"messages[{i}]: reasoning_content does not match its phases")
    if not 0.0 <= traj.outcome.reward <= 1.0:
        errs.append(f"outcome.reward {traj.outcome.reward} is outside [0, 1]")
    if traj.outcome.verified and not traj.outcome.checker:
        errs.append("a verified outcome must name its checker")
    return errs


def trajectory_id(domain: str, task_id: str, messages: list[dict[str, Any]]) -> str:
    """Deterministic id: the domain, the task and a hash of the conversation."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return f"{domain}-{task_id}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def trajectory_files(folder: str | Path) -> list[Path]:
    """The JSONL files of a trajectory folder (`<folder>/**/*.jsonl`, sorted), or [folder] when
    it is one file."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"trajectory folder {folder} does not exist (run `youtu synth`)")
    return [folder] if folder.is_file() else sorted(folder.rglob("*.jsonl"))


def load_trajectories(folder: str | Path, validate: bool = True) -> Iterator[Trajectory]:
    """Every trajectory in `<folder>/**/*.jsonl` (or in one such file), in sorted file order."""
    for path in trajectory_files(folder):
        with path.open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield Trajectory.from_dict(json.loads(line), validate=validate)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from e
