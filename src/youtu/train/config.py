"""Training configuration (owned by youtu.train): pre-/mid-training and SFT.

`OptimizerConfig` is AdamW, the LR schedule's shape and clipping, shared with RL
(`youtu.rl.config.RLConfig`). `LoopConfig` adds what pre-training, mid-training and SFT share
(batching, precision, checkpoints, logging): they run the same step, schedule and checkpoint code.
`TrainConfig` adds the curriculum (`stages`, one `StageConfig` each, owned by youtu.data) and
which of them this invocation runs; `SFTConfig` adds the conversation data and a step budget.

    youtu train configs/tiny.toml --train.lr=3e-3 --train.run_stages='["agent"]'
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Literal

from youtu.data.config import StageConfig


@dataclass(kw_only=True)
class OptimizerConfig:
    """AdamW, the LR schedule's shape and gradient clipping: the settings every training phase
    (pre-/mid-training, SFT, RL) reads, so their keys and checks are the same everywhere."""

    lr: float = 3e-3
    """Peak learning rate (the WSD plateau)."""
    min_lr_ratio: float = 0.1
    """LR floor at the end of the decay, as a fraction of `lr`."""
    warmup_steps: int = 20
    """Linear warmup from lr/warmup_steps to lr, in optimizer steps."""
    decay: Literal["linear", "cosine", "1-sqrt"] = "1-sqrt"
    """Shape of the WSD decay."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices."""
    weight_decay_norms: bool = False
    """Also decay RMSNorm weights (off: they are gains around 1, decay pulls them to 0)."""
    weight_decay_embeddings: bool = False
    """Also decay the embedding matrix (= the tied lm_head)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 = no clipping."""

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")


@dataclass(kw_only=True)
class LoopConfig(OptimizerConfig):
    """The optimizer plus batching, precision, checkpoints and logging: shared by train and SFT."""

    micro_batch_tokens: int = 0
    """Tokens per forward/backward per process (gradient accumulation up to the batch);
    0 = the whole per-process batch in one forward."""
    loss_chunk_tokens: int = 4096
    """Tokens per chunk of the fused lm_head + cross-entropy (bounds logits memory to
    chunk x vocab); 0 = one chunk."""
    loss_kernel: Literal["chunked", "chunked_compiled", "compiled"] = "chunked"
    """'chunked': the fused lm_head + cross-entropy in chunks of `loss_chunk_tokens` (bounded
    memory, any device). 'chunked_compiled': the same chunks, each chunk's softmax and gradient
    one torch.compile'd function (a GPU option; for the 2B at 2 x 4096 on an H100, 0.975x
    'compiled', and 1.05x 'chunked' of an earlier run). 'compiled': lm_head + cross-entropy on
    the full logits as one torch.compile'd function (faster on a GPU with memory for B x T x
    vocab logits: 8% over 'chunked' for the 2B at 2 x 4096 on an H100, with less memory; the
    first step compiles it)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """'auto' = bf16 autocast on CUDA, fp32 on CPU. Master weights and optimizer stay fp32."""
    compile: bool = False
    """torch.compile each transformer block."""
    activation_checkpointing: bool | Literal["off", "full", "selective"] = "off"
    """Recompute activations in backward: 'full' = each whole block (least memory, one more
    forward of compute), 'selective' = a per-op policy that keeps matmul and attention outputs
    and recomputes the rest (torchtitan's "op" SAC; 2B at 32k on an H200: 1.17x the speed of
    'full' for 62.6 instead of 38.4 GB), 'off' = none. true / false mean 'full' / 'off'."""
    spike_factor: float = 4.0
    """Skip a step whose loss exceeds this multiple of the recent average; 0 = off."""
    max_skipped_steps: int = 10
    """Stop the run (TrainingDiverged) once more than this many steps were skipped for a
    NaN/inf or spiking loss or gradient norm."""
    log_every: int = 1
    """Steps between log lines (metrics are written at the same cadence)."""
    checkpoint_every: int = 0
    """Steps between checkpoints; 0 = only at the end of each stage / of the run."""
    keep_last: int = 2
    """Periodic checkpoints kept (stage-end checkpoints are always kept)."""
    eval_every: int = 0
    """Steps between held-out evaluations (also run at every stage end); 0 = stage ends only."""
    heldout_tokens: int = 8192
    """Held-out tokens per domain for the bits-per-byte / held-out loss evaluation; 0 = off."""
    max_steps: int = 0
    """Shrink the run to at most this many steps: every stage keeps its share of the plan (at
    least one step) and the warmup shrinks alike, so the whole recipe runs quickly (CI, smoke
    tests); 0 = the full plan."""
    stop_after: int = 0
    """End this invocation after this global step, with a checkpoint (a rerun continues from
    it); 0 = run to the end."""
    tensorboard: bool = True
    """Also write TensorBoard events when tensorboard is installed (JSONL is always written)."""
    resume: bool = True
    """Continue from the newest complete checkpoint in the output folder that loads (each one
    skipped is logged); false refuses a folder that already holds checkpoints."""
    preempt_signal: str = "SIGUSR1"
    """The signal that means "preempted" (Slurm: `sbatch --signal=USR1@120`): finish the step,
    checkpoint, `scontrol requeue` the job, exit. SIGTERM and SIGINT always checkpoint and
    stop (exit 143 / 130); '' = no preemption signal."""

    def __post_init__(self):
        super().__post_init__()
        name = "SIG" + self.preempt_signal.upper().removeprefix("SIG")
        if self.preempt_signal and name not in signal.Signals.__members__:
            raise ValueError(f"preempt_signal {self.preempt_signal!r} is not a signal name "
                             "(e.g. 'SIGUSR1', 'SIGUSR2'; '' = none)")
        for name in ("micro_batch_tokens", "loss_chunk_tokens", "max_skipped_steps",
                     "checkpoint_every", "eval_every", "heldout_tokens", "max_steps", "stop_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.spike_factor < 0 or (self.spike_factor and self.spike_factor <= 1.0):
            raise ValueError(f"spike_factor must be > 1 (or 0 = off), got {self.spike_factor}")
        if isinstance(self.activation_checkpointing, bool):  # the old boolean setting
            self.activation_checkpointing = "full" if self.activation_checkpointing else "off"
        if self.activation_checkpointing not in ("off", "full", "selective"):
            raise ValueError(f"activation_checkpointing must be 'off', 'full' or 'selective' "
                             f"(or true/false), got {self.activation_checkpointing!r}")


def _paper_stages() -> list[StageConfig]:
    """The paper's four stages at toy scale: commonsense -> STEM/code -> general (decay, longer
    context) -> agentic (~60% trajectories, decay continues)."""
    return [
        StageConfig(name="commonsense", tokens=1_000_000, seq_len=256, batch_tokens=8192,
                    mix={"commonsense": 0.75, "stem": 0.125, "code": 0.125},
                    lr_phase="warmup_stable"),
        StageConfig(name="stem", tokens=1_000_000, seq_len=256, batch_tokens=8192,
                    mix={"commonsense": 0.4, "stem": 0.3, "code": 0.3}, lr_phase="stable"),
        StageConfig(name="general", tokens=500_000, seq_len=512, batch_tokens=8192,
                    mix={"commonsense": 0.4, "stem": 0.25, "code": 0.25, "agent": 0.1},
                    lr_phase="decay"),
        StageConfig(name="agent", tokens=500_000, seq_len=512, batch_tokens=8192,
                    mix={"agent": 0.6, "commonsense": 0.15, "stem": 0.125, "code": 0.125},
                    lr_phase="decay"),
    ]


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """Curriculum pre-training and mid-training (`youtu train`)."""

    stages: list[StageConfig] = field(default_factory=_paper_stages)
    """The curriculum, in order. The WSD decay spans the trailing stages whose lr_phase is
    'decay' (the paper's stages 3-4), so it continues across them."""
    run_stages: list[str] = field(default_factory=list)
    """Names of the stages this invocation runs, a contiguous run of `stages`; empty = all.
    Starting after the first stage continues from `init`, else from that stage's predecessor's
    end checkpoint in the output folder. Step numbers and LR stay those of the full plan."""
    init: str = ""
    """Checkpoint to start from. A folder with trainer_state continues its exact state (step,
    optimizer, data cursor); a plain HF model folder loads only the weights."""
    init_weights_only: bool = False
    """Take only the weights from `init` even when it has trainer state (fresh optimizer and
    data cursor, start at the first selected stage)."""
    heldout_dir: str = ""
    """Token shards kept out of training (a `youtu data prepare` folder built with the same
    tokenizer) for per-domain held-out loss and bits per byte; empty = `<data dir>/heldout`
    when it exists, else no held-out evaluation."""
    eval_hook: bool = False
    """Run youtu.eval (the `[eval]` section) on every stage-end checkpoint and log its scores
    (`eval/<key>`)."""
    eval_hook_every: int = 0
    """With `eval_hook`: also every this many steps, on a step checkpoint written for it
    (counted in `keep_last`); 0 = stage ends only. Separate from `eval_every` (the cheap
    held-out loss), as a youtu.eval run costs much more."""
    fp8: Literal["off", "tensorwise", "rowwise"] = "off"
    """FP8 matmuls in the transformer blocks' linears through torchao.float8 (CUDA with compute
    capability >= 8.9, `pip install 'youtu[gpu]'`): 'tensorwise' = one scale per tensor (the
    fastest), 'rowwise' = one scale per row (more accurate). Master weights, optimizer,
    embeddings and the tied lm_head stay as without it. Meant with `compile = true` (torchao's
    casts are fused by Inductor; eager FP8 is slower than bf16)."""
    fp8_linears: Literal["all", "auto"] = "all"
    """With `fp8`: 'all' = every block linear with dims divisible by 16; 'auto' = torchao's
    shape heuristic (from its H100 tables), which keeps in bf16 the linears FP8 makes slower
    (at the 2B, rowwise then converts only gate_proj and up_proj)."""

    def __post_init__(self):
        super().__post_init__()
        if not self.stages:
            raise ValueError("stages must name at least one curriculum stage")
        if self.eval_hook_every < 0:
            raise ValueError(f"eval_hook_every must be >= 0, got {self.eval_hook_every}")
        if self.fp8 not in ("off", "tensorwise", "rowwise"):
            raise ValueError(f"fp8 must be 'off', 'tensorwise' or 'rowwise', got {self.fp8!r}")
        if self.fp8_linears not in ("all", "auto"):
            raise ValueError(f"fp8_linears must be 'all' or 'auto', got {self.fp8_linears!r}")
        if self.eval_hook_every and not self.eval_hook:
            raise ValueError("eval_hook_every needs eval_hook = true (it schedules the youtu.eval "
                             "hook); set both, or eval_every for the held-out loss alone")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: stage names must be unique, got {names}")
        unknown = [n for n in self.run_stages if n not in names]
        if unknown:
            raise ValueError(f"run_stages: unknown stage(s) {unknown}; stages are {names}")
        idx = [names.index(n) for n in self.run_stages]
        if idx and idx != list(range(idx[0], idx[0] + len(idx))):
            raise ValueError(f"run_stages must be a contiguous run of stages in curriculum order "
                             f"{names}, got {self.run_stages}")


@dataclass(kw_only=True)
class SFTConfig(LoopConfig):
    """Supervised fine-tuning on conversations and rendered trajectories (`youtu sft`)."""

    lr: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 10
    """Linear warmup, in optimizer steps."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay on matrices."""
    spike_factor: float = 0.0
    """Skip a step whose loss exceeds this multiple of the recent average; 0 = off (SFT batches
    vary too much in difficulty for a fixed factor)."""
    steps: int = 100
    """Optimizer steps."""
    decay_fraction: float = 0.3
    """Fraction of `steps` at the end spent decaying the LR to the floor."""
    seq_len: int = 512
    """Packed row length in tokens (conversations longer than this are dropped)."""
    batch_tokens: int = 8192
    """Global batch in tokens (a multiple of seq_len)."""
    init: str = ""
    """Checkpoint to fine-tune; empty = the final checkpoint of `youtu train` in the run folder."""
    conversations: str = ""
    """JSONL file or folder of `{"messages": [...], "tools": [...]}` objects (OpenAI chat format);
    empty = `<data dir>/chat` when it exists."""
    trajectories: str = ""
    """Folder of agentic trajectory JSONL (youtu.agentic); empty = `<run_dir>/synth` if it
    exists."""
    verified_only: bool = True
    """Keep only trajectories whose outcome was verified correct."""
    enable_thinking: bool = True
    """Render reasoning_content inside <think> blocks (the chat template's thinking mode)."""
    heldout_fraction: float = 0.1
    """Fraction of examples (chosen by a hash of their content) held out for the SFT loss."""

    def __post_init__(self):
        super().__post_init__()
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.seq_len < 8 or self.batch_tokens % self.seq_len:
            raise ValueError(f"batch_tokens ({self.batch_tokens}) must be a multiple of seq_len "
                             f"({self.seq_len}), and seq_len >= 8")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
