"""APTBench-format runner: tasks are data (a TOML table each), not code.

    specs = load_task_specs()                                    # tasks/aptbench.toml
    scores = run_tasks(lm, specs, aptbench_dir(), "runs/tiny/eval/aptbench", limit=20)
    scores["aptbench/math/planning_single"], scores["aptbench/math"]

Protocol (`../shared/aptbench/README.md`, from the public APTBench release): fill the task's
prompt template by replacing each `$PLACEHOLDER$` with the item's (stripped) field, keep the
first and last halves of a prompt longer than 120,000 tokens (or than the model's context minus
the generation budget), generate greedily for at most `max_new_tokens`, extract an answer from
the stripped output with the task's rule (`youtu.eval.extract`), judge it against the answer
field. Task score = share of items judged correct; category score = mean of its tasks' scores.

Every prediction is appended to `<out_dir>/<category>__<task>.jsonl` as soon as its batch is
done, so an interrupted run resumes where it stopped; a sidecar `.meta.json` holds the model
fingerprint and task spec the predictions belong to, and a mismatch starts the task afresh.
An empty generation counts as wrong (the release skipped such items instead, which would drop
them from the denominator and inflate scores of models that emit EOS at once).

Adding a task: put its data and prompt under the APTBench folder and add a `[[task]]` table to
a task file; `youtu eval --eval.aptbench_tasks=my_tasks.toml` runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import statistics
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from youtu.errors import ConfigError
from youtu.eval.extract import (EXTRACTORS, FIRST_LINE_RULES, JUDGES, extract_answer,
                                judge_answer)
from youtu.eval.harness import LM, GenerationRequest

logger = logging.getLogger(__name__)

TASKS_FILE = Path(__file__).parent / "tasks" / "aptbench.toml"
"""The shipped task table (the README protocol table, as data)."""
PROMPT_TOKEN_LIMIT = 120_000
"""APTBench truncates longer prompts to their first and last 60k tokens."""


def aptbench_dir() -> Path:
    """The APTBench data folder: `$YOUTU_APTBENCH_DIR`, else `<repo>/../shared/aptbench`."""
    env = os.environ.get("YOUTU_APTBENCH_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]  # src/youtu/eval/aptbench.py -> repo root
    return repo.parent / "shared" / "aptbench"


@dataclass(kw_only=True)
class TaskSpec:
    """One APTBench-format task: where its items and prompt are and how to score it."""

    name: str
    """Task name within its category, e.g. 'planning_single'."""
    category: str
    """Category the task's score is averaged into, e.g. 'math', 'tool'."""
    data: str
    """JSONL items, relative to the task root (or absolute)."""
    prompt: str
    """Prompt template file, relative to the task root (or absolute)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Placeholder (e.g. '$REPO_INFO$') -> item field substituted for it."""
    max_new_tokens: int = 10
    """Greedy generation budget (tokens)."""
    extract: str = "letter_a_e"
    """Extraction rule (a key of youtu.eval.extract.EXTRACTORS)."""
    answer: str = "answer"
    """Item field holding the reference answer."""
    judge: str = "equal"
    """Judge (a key of youtu.eval.extract.JUDGES)."""
    id_field: str = "uuid"
    """Item field that identifies it (for resuming); the line number when absent."""

    def __post_init__(self):
        if self.extract not in EXTRACTORS:
            raise ValueError(f"extract: {self.extract!r} is not a rule; known: "
                             f"{', '.join(EXTRACTORS)}")
        if self.judge not in JUDGES:
            raise ValueError(f"judge: {self.judge!r} is not a judge; known: {', '.join(JUDGES)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.name or not self.category or "/" in self.category:
            raise ValueError(f"task needs a name and a category without '/', got "
                             f"{self.category!r}/{self.name!r}")

    @property
    def key(self) -> str:
        """'category/name'."""
        return f"{self.category}/{self.name}"


def load_task_specs(path: str | Path = TASKS_FILE) -> list[TaskSpec]:
    """Read `[[task]]` tables from a TOML file (strict: unknown keys are errors)."""
    from youtu.configlib import from_dict

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task file {path} does not exist")
    tables = tomllib.loads(path.read_text()).get("task", [])
    if not tables:
        raise ConfigError(f"{path} defines no [[task]] tables")
    return [from_dict(TaskSpec, t, prefix=f"{path.name}:task[{i}]") for i, t in enumerate(tables)]


def read_items(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    """The first `limit` items (0 = all) of a JSONL file."""
    if not path.is_file():
        raise FileNotFoundError(f"task data {path} does not exist (set YOUTU_APTBENCH_DIR or "
                                "--eval.aptbench_dir to the APTBench folder)")
    items = []
    with path.open() as f:
        for line in f:
            if line.strip():
                items.append(json.loads(line))
                if limit and len(items) >= limit:
                    break
    return items


def render_prompt(template: str, fields: dict[str, str], item: dict[str, Any]) -> str:
    """Replace each placeholder with the item's field, stripped (lists/dicts as JSON)."""
    prompt = template
    for placeholder, name in fields.items():
        if name not in item:
            raise KeyError(f"item {item.get('uuid', '?')} has no field {name!r} for {placeholder}")
        value = item[name]
        value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        prompt = prompt.replace(placeholder, value.strip())
    return prompt


def _resolve(root: Path, rel: str) -> Path:
    return Path(rel) if Path(rel).is_absolute() else root / rel


def _load_done(pred_file: Path, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Predictions already made for this model and spec, or none (and a fresh file)."""
    meta_file = pred_file.with_suffix(".meta.json")
    if pred_file.is_file() and meta_file.is_file() and json.loads(meta_file.read_text()) == meta:
        rows = [json.loads(line) for line in pred_file.read_text().splitlines() if line.strip()]
        return {r["id"]: r for r in rows}
    if pred_file.is_file():
        logger.warning("%s belongs to another model or task spec: starting it over", pred_file)
    pred_file.parent.mkdir(parents=True, exist_ok=True)
    pred_file.write_text("")
    meta_file.write_text(json.dumps(meta, sort_keys=True))
    return {}


def run_task(lm: LM, spec: TaskSpec, root: str | Path, out_dir: str | Path, *, limit: int = 0,
             batch_size: int = 16, max_prompt_tokens: int = PROMPT_TOKEN_LIMIT,
             fingerprint: str = "") -> dict[str, Any]:
    """Score one task, resuming from earlier predictions.

    Args:
        lm: The model.
        spec: The task.
        root: Folder that the spec's relative `data` and `prompt` paths start from.
        out_dir: Where `<category>__<task>.jsonl` predictions go.
        limit: Items to evaluate (the first ones of the file); 0 = all.
        batch_size: Prompts per `generate_until` call (and per save).
        max_prompt_tokens: Head+tail truncation limit (the model's context may lower it).
        fingerprint: Identifies the model; predictions of another fingerprint are not reused.

    Returns:
        {'score', 'correct', 'n', 'truncated', 'predictions'} for the evaluated items.
    """
    return _run(lm, [spec], root, out_dir, limit=limit, batch_size=batch_size,
                max_prompt_tokens=max_prompt_tokens, fingerprint=fingerprint)[0]


@dataclass
class _Task:
    """One task during a run: its prompt template, token budget, and predictions so far."""

    spec: TaskSpec
    template: str
    budget: int
    pred_file: Path
    ids: list[str]
    done: dict[str, dict[str, Any]]
    todo: list[tuple[str, dict[str, Any]]]


def _open_task(lm: LM, spec: TaskSpec, root: Path, out_dir: Path, limit: int,
               max_prompt_tokens: int, fingerprint: str) -> _Task:
    data = _resolve(root, spec.data)
    items = read_items(data, limit)
    template = _resolve(root, spec.prompt).read_text()
    pred_file = out_dir / f"{spec.category}__{spec.name}.jsonl"
    meta = {"fingerprint": fingerprint, "spec": dataclasses.asdict(spec),
            "max_prompt_tokens": max_prompt_tokens,
            "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest()[:16],
            "prompt_sha256": hashlib.sha256(template.encode()).hexdigest()[:16]}
    done = _load_done(pred_file, meta)
    ids = [str(it.get(spec.id_field, f"line{i}")) for i, it in enumerate(items)]
    todo = [(i, it) for i, it in zip(ids, items) if i not in done]
    budget = min(max_prompt_tokens, lm.max_length - spec.max_new_tokens - 1)
    return _Task(spec, template, budget, pred_file, ids, done, todo)


def _run(lm: LM, specs: Sequence[TaskSpec], root: str | Path, out_dir: str | Path, *,
         limit: int = 0, batch_size: int = 16, max_prompt_tokens: int = PROMPT_TOKEN_LIMIT,
         fingerprint: str = "") -> list[dict[str, Any]]:
    """Score several tasks, their pending items in shared `generate_until` calls of
    `batch_size` prompts (one task of 20 items no longer holds a batch of 64 to 20 rows);
    each chunk's predictions are appended to their task's file before the next chunk."""
    root, out_dir = Path(root), Path(out_dir)
    tasks = [_open_task(lm, spec, root, out_dir, limit, max_prompt_tokens, fingerprint)
             for spec in specs]
    todo = [(task, item_id, item) for task in tasks for item_id, item in task.todo]
    files = {id(t): t.pred_file.open("a") for t in tasks}
    bar = tqdm(total=len(todo), desc=specs[0].key if len(specs) == 1 else "tasks", unit="item",
               disable=not todo)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            prompts = [lm.truncate(render_prompt(t.template, t.spec.fields, it), t.budget)
                       for t, _, it in chunk]
            outputs = lm.generate_until([GenerationRequest(
                p, t.spec.max_new_tokens, first_line_only=t.spec.extract in FIRST_LINE_RULES)
                for (t, _, _), (p, _, _) in zip(chunk, prompts)])
            for (t, item_id, item), (_, n_tok, cut), output in zip(chunk, prompts, outputs):
                pred = extract_answer(t.spec.extract, output)
                answer = item[t.spec.answer]
                row = {"id": item_id, "answer": answer, "output": output, "pred": pred,
                       "correct": judge_answer(t.spec.judge, pred, answer),
                       "prompt_tokens": n_tok, "truncated": cut}
                t.done[item_id] = row
                files[id(t)].write(json.dumps(row, ensure_ascii=False) + "\n")
            for f in files.values():
                f.flush()
            bar.update(len(chunk))
    finally:
        for f in files.values():
            f.close()
        bar.close()
    results = []
    for t in tasks:
        rows = [t.done[i] for i in t.ids]
        correct = sum(r["correct"] for r in rows)
        results.append({"score": correct / len(rows) if rows else 0.0, "correct": correct,
                        "n": len(rows), "truncated": sum(r["truncated"] for r in rows),
                        "predictions": str(t.pred_file)})
    return results


def run_tasks(lm: LM, specs: Sequence[TaskSpec], root: str | Path, out_dir: str | Path, *,
              prefix: str = "aptbench", **kwargs: Any) -> dict[str, Any]:
    """Run several tasks, their items batched together; flat scores
    `<prefix>/<category>/<task>` and `<prefix>/<category>` (mean over its tasks), plus
    `details` per task. `kwargs` go to `run_task`."""
    scores: dict[str, Any] = {}
    details: dict[str, Any] = {}
    by_category: dict[str, list[float]] = {}
    for spec, res in zip(specs, _run(lm, specs, root, out_dir, **kwargs) if specs else []):
        key = f"{prefix}/{spec.key}"
        scores[key] = res["score"]
        details[key] = res
        by_category.setdefault(spec.category, []).append(res["score"])
        logger.info("%s: %.3f (%d/%d)", key, res["score"], res["correct"], res["n"])
    for category, values in by_category.items():
        scores[f"{prefix}/{category}"] = statistics.fmean(values)
    return {"scores": scores, "details": details}
