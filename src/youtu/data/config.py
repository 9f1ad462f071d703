"""Data configuration (owned by youtu.data): sources, filters, shards, curriculum stages.

`DataConfig` is the `[data]` section of a run config (`youtu data prepare|inspect`);
`StageConfig` is one curriculum stage and is shared with the trainer (`[[train.stages]]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from youtu.errors import ConfigError

DOMAINS = ("commonsense", "stem", "code", "agent", "chat")
"""Domain names used everywhere; a source may also name its own (any lowercase word)."""
RESERVED_NAMES = ("heldout", "tokenizer", ".pipeline")
"""Subfolders of a shard folder that are not domains (the held-out split, the tokenizer, the
datatrove pipeline's work folder)."""


def check_domain(name: str, key: str, allow_auto: bool = False) -> None:
    """Raise `ConfigError` (a ValueError) naming `key` unless `name` can be a domain: lowercase
    letters, digits and underscores (it becomes a shard folder name), not a reserved name."""
    if allow_auto and name == "auto":
        return
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ConfigError(f"{key} must be a lowercase domain name such as {', '.join(DOMAINS)}"
                         f"{' or auto' if allow_auto else ''}, got {name!r}")
    if name in RESERVED_NAMES:
        raise ConfigError(f"{key} cannot be {name!r}: a shard folder keeps its "
                         f"{' and '.join(RESERVED_NAMES)} subfolders under that name; pick "
                         f"another domain name")


@dataclass(kw_only=True)
class StageConfig:
    """One curriculum stage: what data, how much, how long the sequences, how the LR moves."""

    name: str = "commonsense"
    """Stage name (commonsense, stem, general, agent, ...)."""
    tokens: int = 1_000_000
    """Token budget of the stage."""
    seq_len: int = 256
    """Training sequence length in this stage."""
    batch_tokens: int = 8192
    """Global batch size in tokens."""
    mix: dict[str, float] = field(default_factory=lambda: {"commonsense": 1.0})
    """Domain -> sampling weight (normalised)."""
    lr_phase: str = "stable"
    """'warmup_stable' | 'stable' | 'decay': where this stage sits in the WSD schedule."""
    rope_theta: float = 0.0
    """RoPE base from this stage on; 0 = unchanged."""
    yarn_factor: float = 0.0
    """YaRN context multiplier from this stage on (model.rope_scaling.factor, e.g. 4 for
    32k -> 128k); 0 = unchanged, 1 = plain RoPE again (scaling off)."""
    yarn_original_seq_len: int = 0
    """Context length the YaRN factor extends (rope_scaling.original_max_position_embeddings),
    in tokens; 0 = the previous stage's seq_len (the length the model was last trained at)."""

    def __post_init__(self):
        if self.tokens <= 0:
            raise ValueError(f"stage {self.name!r}: tokens must be > 0, got {self.tokens}")
        if self.seq_len <= 0:
            raise ValueError(f"stage {self.name!r}: seq_len must be > 0, got {self.seq_len}")
        if self.batch_tokens <= 0:
            raise ValueError(f"stage {self.name!r}: batch_tokens must be > 0, got "
                             f"{self.batch_tokens}")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"stage {self.name!r}: mix needs non-negative weights with a positive "
                             f"sum, e.g. {{commonsense = 0.75, code = 0.25}}; got {self.mix}")
        if self.yarn_factor and self.yarn_factor < 1.0:
            raise ValueError(f"stage {self.name!r}: yarn_factor must be >= 1 (1 = plain RoPE) or "
                             f"0 (unchanged), got {self.yarn_factor}")
        if self.yarn_original_seq_len < 0:
            raise ValueError(f"stage {self.name!r}: yarn_original_seq_len must be >= 0 (0 = the "
                             f"previous stage's seq_len), got {self.yarn_original_seq_len}")
        if self.yarn_original_seq_len and not self.yarn_factor:
            raise ValueError(f"stage {self.name!r}: yarn_original_seq_len needs a yarn_factor "
                             f"(> 1) in the same stage")


@dataclass(kw_only=True)
class SourceConfig:
    """One document source: a file, a folder, or a `datasets` folder saved with `save_to_disk`."""

    path: str = ""
    """File or folder. Files: .jsonl/.json/.ndjson (optionally .gz/.zst), .parquet, text."""
    kind: Literal["auto", "jsonl", "parquet", "text", "hf"] = "auto"
    """Reader; 'auto' picks by suffix (a folder is read file by file, or as 'hf' when it holds
    a saved dataset)."""
    name: str = ""
    """Source name recorded in documents and the manifest; empty = the path's file name."""
    domain: str = "auto"
    """Domain of every document (commonsense, stem, code, agent, chat, ...); 'auto' = classify."""
    text_field: str = "text"
    """Record field holding the text (JSONL, Parquet, HF)."""
    domain_field: str = ""
    """Record field holding a per-record domain; empty = use `domain`."""
    split: str = "train"
    """Split to read when `path` is a saved `DatasetDict`."""
    extensions: list[str] = field(default_factory=lambda: [".txt", ".md", ".rst"])
    """File suffixes read as plain text when walking a folder (one file = one document)."""
    max_docs: int = 0
    """Stop after this many documents; 0 = all."""

    def __post_init__(self):
        if not self.path:
            raise ValueError("sources[].path must name a file or folder (every [[data.sources]] "
                             "entry needs one)")
        check_domain(self.domain, "sources[].domain", allow_auto=True)
        if self.max_docs < 0:
            raise ValueError(f"sources[].max_docs must be >= 0 (0 = all), got {self.max_docs}")


@dataclass(kw_only=True)
class EmbeddedConfig:
    """The default corpus carried by the Python installation itself (no download)."""

    enabled: bool = True
    """Include it (besides any `sources`)."""
    code_chars: int = 2_000_000
    """Cap on standard-library source text (domain code), in characters; 0 = none."""
    prose_chars: int = 1_500_000
    """Cap on docstrings, comments and pydoc topics (domain commonsense), in characters."""
    stem_chars: int = 1_000_000
    """Cap on generated worked arithmetic/algebra problems (domain stem), in characters."""
    problems_per_doc: int = 8
    """Worked problems per generated stem document (a worksheet)."""
    packages_chars: int = 0
    """Cap on the installed Python distributions' descriptions (their METADATA README text)
    plus the README files under `doc_dir`, markup stripped (domain commonsense), in
    characters; 0 = off. ~2 MB on a machine with ~150 packages."""
    package_docstrings_chars: int = 0
    """Cap on the docstrings and comment blocks of installed third-party modules (domain
    commonsense), in characters; 0 = off. Tens of MB where torch/jax/scipy are installed."""
    doc_dir: str = "/usr/share/doc"
    """The OS documentation folder whose package READMEs join `packages_chars`; "" = skip it.
    A missing folder (most containers) contributes nothing."""

    def __post_init__(self):
        for key in ("code_chars", "prose_chars", "stem_chars", "packages_chars",
                    "package_docstrings_chars"):
            if getattr(self, key) < 0:
                raise ValueError(f"embedded.{key} must be >= 0, got {getattr(self, key)}")
        if self.problems_per_doc < 1:
            raise ValueError(f"embedded.problems_per_doc must be >= 1, got {self.problems_per_doc}")


@dataclass(kw_only=True)
class QualityConfig:
    """Document quality heuristics (Gopher, Rae et al. 2021, App. A; C4; StarCoder for code).

    Thresholds apply per domain profile: prose rules to commonsense, code rules to code,
    relaxed rules to stem, length only to agent/chat (see youtu.data.filters)."""

    enabled: bool = True
    """Apply the quality filters."""
    min_words: int = 50
    """Prose/stem: fewer words than this is removed (Gopher: 50)."""
    max_words: int = 100_000
    """Prose/stem: more words than this is removed (Gopher: 100,000)."""
    min_mean_word_len: float = 3.0
    """Prose: mean word length below this (chars) is removed (Gopher: 3)."""
    max_mean_word_len: float = 10.0
    """Prose: mean word length above this (chars) is removed (Gopher: 10)."""
    max_symbol_ratio: float = 0.1
    """Prose: '#' and '...' per word above this is removed (Gopher: 0.1)."""
    max_bullet_lines: float = 0.9
    """Prose: fraction of lines starting with a bullet above this is removed (Gopher: 0.9)."""
    max_ellipsis_lines: float = 0.3
    """Prose: fraction of lines ending in an ellipsis above this is removed (Gopher: 0.3)."""
    min_alpha_words: float = 0.8
    """Prose: fraction of words with a letter below this is removed (Gopher: 0.8)."""
    min_stop_words: int = 2
    """Prose: distinct stop words needed out of: the be to of and that have with (Gopher: 2)."""
    min_terminal_punct_lines: float = 0.12
    """Prose: fraction of lines ending in . ! ? : or a quote below this is removed (FineWeb:
    0.12)."""
    max_dup_line_frac: float = 0.3
    """All text domains: fraction of duplicated lines above this is removed (Gopher: 0.3)."""
    max_dup_line_char_frac: float = 0.2
    """Prose/stem: characters in duplicated lines above this fraction is removed (Gopher: 0.2)."""
    max_top_ngram_frac: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])
    """Prose/stem: char fraction of the most frequent 2-, 3-, 4-gram (Gopher: 0.20/0.18/0.16)."""
    max_dup_ngram_frac: list[float] = field(
        default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])
    """Prose: char fraction in repeated 5..10-grams (Gopher: 0.15 down to 0.10)."""
    code_min_chars: int = 200
    """Code: files shorter than this (chars) are removed (empty `__init__.py` and the like)."""
    code_max_line_len: int = 1000
    """Code: a line longer than this removes the file (StarCoder: 1000)."""
    code_max_mean_line_len: float = 100.0
    """Code: mean line length above this is removed (StarCoder: 100)."""
    code_min_alnum_frac: float = 0.25
    """Code: alphanumeric character fraction below this is removed (StarCoder: 0.25)."""
    max_chars: int = 1_000_000
    """Every domain: documents longer than this (chars) are removed."""
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    """Language id on prose (commonsense): keep these (any of: en zh ja ko ru ar other)."""

    def __post_init__(self):
        if not 0 < self.min_words <= self.max_words:
            raise ValueError(f"quality.min_words ({self.min_words}) must be in 1..max_words "
                             f"({self.max_words})")
        if len(self.max_top_ngram_frac) != 3:
            raise ValueError("quality.max_top_ngram_frac needs 3 values (2-, 3-, 4-grams), got "
                             f"{self.max_top_ngram_frac}")
        if len(self.max_dup_ngram_frac) != 6:
            raise ValueError("quality.max_dup_ngram_frac needs 6 values (5- to 10-grams), got "
                             f"{self.max_dup_ngram_frac}")


@dataclass(kw_only=True)
class DedupConfig:
    """Exact and near-duplicate removal, and eval decontamination."""

    exact: bool = True
    """Drop documents whose whitespace-normalised text was already seen (sha1). Pretraining
    domains are deduplicated against each other, `chat` (SFT) only against itself."""
    near: bool = True
    """Drop near-duplicates: datatrove's sharded MinHash dedup (signatures per task, LSH buckets
    per band, union-find clusters; one document kept per cluster)."""
    near_domains: list[str] = field(default_factory=lambda: ["commonsense", "code", "agent"])
    """Domains near-dedup applies to. Generated stem problems are templated by construction
    (their diversity is in numbers), so near-dedup would drop most of them; exact dedup still
    applies. Agent trajectories are diverse enough (bench/synth_diversity.py) to keep it on."""
    threshold: float = 0.8
    """Estimated Jaccard similarity at which two documents are near-duplicates."""
    num_perm: int = 128
    """MinHash permutations (more = better estimate, slower)."""
    shingle_words: int = 5
    """Words per shingle."""
    decontam_paths: list[str] = field(default_factory=list)
    """Eval sets to decontaminate against: .jsonl (field `decontam_field`), .txt (one item per
    blank-line separated block), or folders of those."""
    decontam_field: str = "text"
    """JSONL field holding an eval item's text (also tried: question, prompt, problem)."""
    decontam_ngram: int = 13
    """Word n-gram length for overlap (GPT-3: 13); shorter eval items match as a whole."""

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"dedup.threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 16:
            raise ValueError(f"dedup.num_perm must be >= 16, got {self.num_perm}")
        if self.shingle_words < 1 or self.decontam_ngram < 1:
            raise ValueError("dedup.shingle_words and dedup.decontam_ngram must be >= 1")


@dataclass(kw_only=True)
class ExecutorConfig:
    """How `youtu data prepare` runs its datatrove pipeline (`[data.executor]`).

    `local` runs every stage's tasks in `data.workers` processes of this machine (0 = in this
    process); `slurm` submits each stage as a Slurm job array (`sbatch`, one array task per
    datatrove task, each stage depending on the one before) and returns at once: the manifest
    appears when the last job (which writes it) finishes. Either way finished tasks leave
    completion markers in the logging folder and are not redone by a re-run."""

    kind: Literal["local", "slurm"] = "local"
    """'local' (processes on this machine; what CI tests) or 'slurm' (job arrays via sbatch)."""
    tasks: int = 0
    """Tasks of each parallel stage (reading/filtering, exact-dedup filtering, tokenizing); the
    inputs are split between them by unit (a file, a saved dataset, one part of the embedded
    corpus, a chunk of extra documents). 0 = one per unit, at most 8 (local) or 64 (slurm); never
    from data.workers, so the shards do not depend on the process count. The output depends on
    it (each task writes its own shards): changing it rebuilds everything."""
    logging_dir: str = ""
    """datatrove logging folder (per stage: task logs, stats, completion markers, Slurm
    scripts); empty = `<data.dir>/.pipeline/logs`."""
    partition: str = ""
    """Slurm partition (required for kind = 'slurm')."""
    time: str = "04:00:00"
    """Slurm time limit per array task (HH:MM:SS)."""
    cpus_per_task: int = 1
    """Slurm CPUs per task."""
    mem_per_cpu_gb: int = 2
    """Slurm memory per CPU, in GB."""
    env_command: str = ""
    """Shell line run in each Slurm job before the task (e.g. `source /path/venv/bin/activate`);
    empty = activate the virtual environment this process runs in, if any."""
    qos: str = ""
    """Slurm QOS; empty = none."""
    sbatch_args: dict[str, str] = field(default_factory=dict)
    """Extra `#SBATCH --key=value` lines, e.g. {account = "proj"}."""

    def __post_init__(self):
        if self.tasks < 0:
            raise ValueError(f"data.executor.tasks must be >= 0 (0 = auto), got {self.tasks}")
        if self.cpus_per_task < 1 or self.mem_per_cpu_gb < 1:
            raise ValueError("data.executor.cpus_per_task and mem_per_cpu_gb must be >= 1")


@dataclass(kw_only=True)
class DataConfig:
    """Where documents come from and how they become token shards."""

    dir: str = ""
    """Token shard folder; empty = `<run_dir>/data`."""
    seed: int = 0
    """Seed of the embedded corpus (file choice, generated problems)."""
    sources: list[SourceConfig] = field(default_factory=list)
    """Document sources besides the embedded corpus (`[[data.sources]]`)."""
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    """The embedded default corpus."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    """Quality heuristics and language id."""
    dedup: DedupConfig = field(default_factory=DedupConfig)
    """Exact/near dedup and decontamination."""
    classifier: Literal["rules", "bayes"] = "rules"
    """Domain classifier for sources with domain 'auto': 'rules' (transparent, no training) or
    'bayes' (naive Bayes trained at prepare time on the embedded corpus' labelled documents)."""
    workers: int = 2
    """Processes running the pipeline's tasks at once (local executor; 0 = every task in this
    process); under Slurm, the most array tasks of a stage running at once (0 = no limit)."""
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    """Where the datatrove pipeline runs (`[data.executor]`: local or slurm)."""
    shard_chars: int = 50_000_000
    """Characters of text per shard (~12M tokens at ~4 chars/token, a 48 MB .bin)."""
    verify_checksums: bool = True
    """Check every shard's sha256 against the manifest when opening (sha256 reads ~1 GB/s)."""
    inspect_samples: int = 1
    """Decoded sample documents per domain shown by `youtu data inspect`."""
    heldout_fraction: float = 0.0
    """Share of the kept documents (every domain, `extra` ones included) routed by a hash of
    their text to `<dir>/heldout/` instead of the training shards, for the trainer's held-out
    loss and bits per byte; 0 = no held-out split."""

    def __post_init__(self):
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {self.workers}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"data.heldout_fraction must be in [0, 1) (a share of documents, "
                             f"e.g. 0.02; 0 = off), got {self.heldout_fraction}")
        if self.shard_chars < 1000:
            raise ValueError(f"data.shard_chars must be >= 1000, got {self.shard_chars}")
