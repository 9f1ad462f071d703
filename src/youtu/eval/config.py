"""Evaluation configuration (owned by youtu.eval): the `[eval]` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TASK_GROUPS = ("aptbench", "probes", "cloze", "bpb", "math_word", "humaneval",
               "function_calling", "needle", "bfcl")
"""Task groups `youtu eval` can run, in the order it runs them."""
DEFAULT_TASKS = TASK_GROUPS[:-1]
"""The groups run when `tasks` is not set: all but BFCL, whose package is an optional install
(`pip install --no-deps bfcl-eval && pip install 'youtu[bfcl]'`)."""
PROBE_KINDS = ("planning", "action", "feedback", "tool_select", "tool_param")
"""APTBench-style probe kinds built from our environments."""
CLOZE_KINDS = ("action", "tool", "args", "answer")
"""Agentic cloze item kinds (multiple choice by log-likelihood, `youtu.eval.tasks.cloze`)."""
HELDOUT_RANGE = 1_000_000
"""Seeds a held-out item family may use from its first seed on (probes: items, shots at +500k)."""


def split_compare(entry: str) -> tuple[str | None, str]:
    """An `eval.compare` entry -> (label or None, path). 'label=path' when the text before the
    first '=' has no '/' (a label is a name; a path may itself contain '=')."""
    label, sep, path = entry.partition("=")
    if sep and "/" not in label:
        return label.strip(), path.strip()
    return None, entry.strip()


@dataclass(kw_only=True)
class EvalConfig:
    """What to evaluate, with which backend, and how much of each task."""

    checkpoint: str = ""
    """Checkpoint folder (youtu/hf backends) or served model name (openai); empty = the newest
    checkpoint under the run folder."""
    backend: Literal["youtu", "hf", "openai"] = "youtu"
    """'youtu' = our checkpoints, 'hf' = any transformers folder, 'openai' = a completions API."""
    base_url: str = ""
    """OpenAI-compatible endpoint for backend 'openai', e.g. 'http://127.0.0.1:8000/v1'."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (read at run time, never stored)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights/activations dtype of local backends (fp32 on CPU)."""
    batch_size: int = 8
    """Sequences per forward (local) or requests in flight (openai)."""
    max_length: int = 0
    """Context limit in tokens; 0 = the model's max_position_embeddings."""
    max_batch_tokens: int = 131072
    """Rows x padded tokens per forward and per KV cache (local backends): long prompts get
    smaller batches."""
    compile_decode: bool = False
    """torch.compile the CUDA-graph decode step of the youtu backend's engine (as
    `serve.compile_decode`). Off by default: an eval decodes a few thousand steps per model,
    and the step's compiles (batch 1, then a dynamic batch, per part) cost tens of seconds once
    per process; the graphs alone already remove the launch overhead. On for long
    generation-heavy evals. The log's per-group `graph_capture_ms` shows what it cost."""
    add_bos: Literal["auto", "yes", "no"] = "auto"
    """Start every sequence with BOS: 'auto' = yes for Youtu models (trained with BOS per
    document), else what the HF tokenizer does by default."""
    cpu_threads: int = 0
    """Torch intra-op CPU threads while evaluating; 0 = torch's default. 1 suits tiny models on
    a shared machine, where OpenMP threads spin-wait (tiny eval on a loaded 2-core host:
    10 min with 2 threads, 45 s with 1)."""
    out: str = ""
    """Results folder; empty = `<run_dir>/eval/<checkpoint folder name>`."""
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    """Task groups to run (subset of: aptbench, probes, cloze, bpb, math_word, humaneval,
    function_calling, needle, bfcl)."""
    compare: list[str] = field(default_factory=list)
    """Earlier `youtu eval` results to compare with (e.g. the checkpoint before agentic
    mid-training): each 'label=path' or 'path', where path is a results.json or the folder
    holding one and the label defaults to that folder's name. Their scores go into this run's
    report.md and plots beside the new checkpoint's (first to last, the new one last; with one
    earlier result the tables get a delta column, new minus earlier)."""

    aptbench_dir: str = ""
    """APTBench data folder; empty = $YOUTU_APTBENCH_DIR, else `<repo>/../shared/aptbench`."""
    aptbench_tasks: str = ""
    """Task table (TOML `[[task]]` list); empty = the shipped `eval/tasks/aptbench.toml`."""
    aptbench_limit: int = 0
    """Items per APTBench task (the first ones of each file); 0 = all."""
    max_prompt_tokens: int = 120_000
    """APTBench head+tail truncation limit (tokens), lowered to the model's context if needed."""

    probe_envs: list[str] = field(default_factory=lambda: ["math", "code", "tools", "research"])
    """Environments the probes and the cloze items are generated from."""
    probe_kinds: list[str] = field(default_factory=lambda: list(PROBE_KINDS))
    """Probe kinds (subset of: planning, action, feedback, tool_select, tool_param)."""
    probe_items: int = 50
    """Items per probe task (environment x kind)."""
    probe_seed: int = 1_000_000
    """First environment seed of the probes (>= 1,000,000: held out from synthesis)."""

    cloze_kinds: list[str] = field(default_factory=lambda: list(CLOZE_KINDS))
    """Cloze item kinds (subset of: action, tool, args, answer)."""
    cloze_items: int = 50
    """Cloze items per (environment, kind)."""
    cloze_seed: int = 2_000_000
    """First environment seed of the cloze items (held out; its 1,000,000 seeds must not
    overlap the probes')."""
    cloze_max_tokens: int = 0
    """Token budget of a cloze context + candidate (oldest turns dropped to fit); 0 = the
    model's context limit (max_length)."""

    bpb_data: str = ""
    """Held-out documents (JSONL file or folder; `text` + `domain` per line); empty = the
    built-in held-out set (see youtu.eval.tasks.bpb)."""
    bpb_docs: int = 8
    """Documents per domain for bits per byte."""
    bpb_doc_chars: int = 2000
    """Approximate characters per built-in held-out document."""

    math_items: int = 50
    """Procedural word problems (exact match)."""
    math_shots: int = 3
    """Solved examples before each problem."""

    humaneval_items: int = 0
    """HumanEval problems (the first ones); 0 = all 164."""
    humaneval_max_new_tokens: int = 384
    """Completion budget per problem (tokens)."""
    humaneval_timeout_s: float = 10.0
    """Sandbox wall-clock limit per test run."""

    function_calling_items: int = 50
    """Items per source (BFCL from the APTBench folder, our tools environment)."""

    bfcl_categories: list[str] = field(default_factory=lambda: ["simple_python", "multiple",
                                                                "parallel", "irrelevance"])
    """BFCL v4 categories by their official names (youtu.eval.tasks.bfcl.ALL_CATEGORIES:
    single-turn and multi_turn_*), scored with bfcl-eval's own data, AST and multi-turn
    checkers through the chat template (engine) or the endpoint (openai backend)."""
    bfcl_limit: int = 50
    """Entries per BFCL category; 0 = all."""

    needle_max_tokens: int = 0
    """Longest haystack: the trained context length; 0 = the model's context limit."""
    needle_lengths: list[int] = field(default_factory=list)
    """Haystack lengths in tokens; empty = 1/4, 1/2 and all of needle_max_tokens."""
    needle_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """Relative needle positions (0 = start of the context, 1 = end)."""

    def __post_init__(self):
        unknown = sorted(set(self.tasks) - set(TASK_GROUPS))
        if unknown:
            raise ValueError(f"tasks: unknown task group(s) {unknown}; valid: "
                             f"{', '.join(TASK_GROUPS)}")
        unknown = sorted(set(self.cloze_kinds) - set(CLOZE_KINDS))
        if unknown:
            raise ValueError(f"cloze_kinds: unknown kind(s) {unknown}; valid: "
                             f"{', '.join(CLOZE_KINDS)}")
        if self.cloze_seed < 1_000_000:
            raise ValueError(f"cloze_seed must be >= 1,000,000 (seeds below are used by "
                             f"synthesis), got {self.cloze_seed}")
        if abs(self.cloze_seed - self.probe_seed) < HELDOUT_RANGE:
            raise ValueError(f"cloze_seed {self.cloze_seed} and probe_seed {self.probe_seed} "
                             f"must be >= {HELDOUT_RANGE:,} apart (each uses that many seeds); "
                             f"e.g. cloze_seed = {self.probe_seed + HELDOUT_RANGE}")
        unknown = sorted(set(self.probe_kinds) - set(PROBE_KINDS))
        if unknown:
            raise ValueError(f"probe_kinds: unknown kind(s) {unknown}; valid: "
                             f"{', '.join(PROBE_KINDS)}")
        for entry in self.compare:
            label, path = split_compare(entry)
            if not path or label == "":
                raise ValueError(f"compare: entry {entry!r} must be 'label=path' or 'path' "
                                 f"(path = an earlier results.json or its folder)")
        if self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.probe_seed < 1_000_000:
            raise ValueError(f"probe_seed must be >= 1,000,000 (seeds below are used by "
                             f"synthesis, so probes would test on training data), got "
                             f"{self.probe_seed}")
        for name in ("aptbench_limit", "probe_items", "cloze_items", "cloze_max_tokens",
                     "bpb_docs", "math_items", "math_shots",
                     "humaneval_items", "function_calling_items", "max_length", "cpu_threads",
                     "needle_max_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_prompt_tokens < 16:
            raise ValueError(f"max_prompt_tokens must be >= 16, got {self.max_prompt_tokens}")
        if any(not 0.0 <= d <= 1.0 for d in self.needle_depths):
            raise ValueError(f"needle_depths must lie in [0, 1], got {self.needle_depths}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
