"""RL configuration (owned by youtu.rl): the `[rl]` section of a run config.

    youtu rl configs/tiny.toml --rl.env=digit_add --rl.lr=1e-3 --rl.steps=40

`RLConfig` shares the trainer's `OptimizerConfig` (AdamW, schedule shape, gradient clipping),
so `--rl.lr`, `--rl.beta2`, `--rl.grad_clip`, ... mean what they mean for `youtu train`; the
rest is rollouts, the GRPO loss, checkpoints and logging, counted in rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from youtu.train.config import OptimizerConfig


@dataclass(kw_only=True)
class RLConfig(OptimizerConfig):
    """GRPO-style RL with verifiable rewards (`youtu rl`).

    Shares the trainer's optimizer keys (`OptimizerConfig`: AdamW, schedule shape, clipping);
    the LR is constant after warmup unless `decay_fraction` > 0. `precision` adds 'fp16' (with
    dynamic loss scaling), which the Youtu-LLM paper found RL needed for a stable
    rollout/training match. Steps here are rounds (one rollout + update each).
    """

    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        k: "RL never read it (RLConfig no longer inherits the pre-training loop's keys); delete "
           "it from the [rl] section (an older run.toml has it)"
        for k in ("spike_factor", "max_skipped_steps", "heldout_tokens", "loss_kernel")}
    """Keys of the old `RLConfig(LoopConfig)`, refused with a message that says why."""

    lr: float = 1e-6
    """Peak learning rate (RL moves a trained policy: ~1e-6 at 2B; the tiny CPU demo uses 1e-3)."""
    warmup_steps: int = 0
    """Linear warmup, in optimizer steps."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay on matrices."""
    micro_batch_tokens: int = 0
    """Padded tokens per forward/backward per process (gradient accumulation up to the
    minibatch); 0 = the whole minibatch in one forward."""
    loss_chunk_tokens: int = 4096
    """Tokens per chunk of the fused lm_head + log-softmax (bounds logits memory to
    chunk x vocab); 0 = one chunk."""
    compile: bool = False
    """torch.compile each transformer block of the trained policy."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward (saves memory, ~1/3 more compute)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute dtype of rollouts and training forwards: 'auto' = fp16 on CUDA (the paper's
    choice), fp32 on CPU. Master weights and optimizer stay fp32; fp16 uses dynamic loss scaling."""
    loss_scale_init: float = 65536.0
    """fp16 only: initial loss scale of the GradScaler (halved on overflow, doubled when stable)."""
    steps: int = 20
    """Rollout-and-update rounds."""
    decay_fraction: float = 0.0
    """Fraction of the optimizer steps at the end spent decaying the LR to lr * min_lr_ratio."""
    init: str = ""
    """Policy checkpoint to start from; empty = the final checkpoint of `youtu sft` in the run."""
    env: str = "math"
    """Task environment: a `youtu.agentic.envs.ENVIRONMENTS` name (math, code, tools,
    research) or an RL smoke task from `youtu.rl.envs` (digit_add)."""
    difficulty: int = 1
    """Task difficulty passed to `env.generate`."""
    rewards: dict[str, float] = field(default_factory=lambda: {"env": 1.0})
    """{reward name: weight} over `youtu.rl.rewards.REWARDS`; the episode reward is the
    weighted sum ('env' = the task environment's verifier)."""
    reward_modules: list[str] = field(default_factory=list)
    """Python modules imported before `rewards` is checked, e.g. ["mypkg.rewards"]: their import
    registers custom rewards (`youtu.rl.rewards.register_reward`) that `rewards` can name."""
    prompts_per_step: int = 8
    """Tasks per round, over all processes (each is rolled out `group_size` times)."""
    group_size: int = 8
    """Rollouts per task (G); advantages are relative to the group."""
    normalize_std: bool = True
    """Divide advantages by the group's reward std (GRPO); False = mean-centred only (Dr. GRPO)."""
    max_turns: int = 1
    """Policy turns per episode; > 1 offers the environment's tools (multi-turn tool episodes)."""
    max_new_tokens: int = 256
    """Most tokens sampled per turn."""
    max_seq_len: int = 2048
    """Token budget of a whole episode (prompt, turns, tool results): the engine's context."""
    enable_thinking: bool = True
    """Chat template thinking mode for prompts."""
    system_prompt: str = ""
    """Optional system message before every task."""
    temperature: float = 1.0
    """Rollout sampling temperature; the training forward uses the same one. Rollouts sample
    the full tempered distribution (no top-k/top-p), so training can reproduce its log-probs."""
    clip_low: float = 0.2
    """Importance ratio lower bound 1 - clip_low."""
    clip_high: float = 0.28
    """Importance ratio upper bound 1 + clip_high (DAPO's clip-higher)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL to the frozen initial policy; 0 = no reference model."""
    aggregation: Literal["token", "sequence"] = "token"
    """Loss mean over all policy tokens (DAPO) or of per-sequence means (GRPO)."""
    epochs: int = 1
    """Passes over each round's rollouts."""
    minibatches: int = 1
    """Optimizer steps per pass (the round's episodes split into this many parts)."""
    old_logprobs: Literal["recompute", "sampler"] = "recompute"
    """Denominator of the importance ratio: 'recompute' = a training forward before the update
    (verl's default), 'sampler' = the log-probs the engine recorded while sampling."""
    mismatch_threshold: float = 0.02
    """Mean |log p_train - log p_sampler| (nats) over policy tokens above which a round is
    flagged as a rollout/training mismatch."""
    mismatch_action: Literal["warn", "raise"] = "warn"
    """What a flagged round does: log a warning, or stop the run."""
    rollout_batch: int = 64
    """Sequences decoded together by the engine (its cache rows)."""
    rollout_cache_fraction: float = 0.5
    """Cap on the rollout engine's latent cache (CUDA): this fraction of the device memory free
    once the policy, its sampler copy, the reference and the optimizer exist; rows beyond it are
    dropped with a warning. AdamW allocates its moments (2x the fp32 weights) at the first
    update, after this is measured: keep room for them. 0 = no cap."""
    eval_tasks: int = 32
    """Held-out tasks (seeds >= 1,000,000) scored at the start, every `eval_every` rounds and at
    the end; 0 = no evaluation."""
    eval_temperature: float = 0.0
    """Sampling temperature of the held-out evaluation (0 = greedy)."""
    eval_every: int = 0
    """Rounds between held-out evaluations (also at the start and the end); 0 = start and end."""
    log_every: int = 1
    """Rounds between log lines (metrics are written at the same cadence)."""
    checkpoint_every: int = 0
    """Rounds between checkpoints; 0 = only the final one."""
    keep_last: int = 2
    """Periodic checkpoints kept (the final one is always kept)."""
    max_steps: int = 0
    """Shrink the run to at most this many rounds (the warmup shrinks alike); 0 = `steps`."""
    stop_after: int = 0
    """End this invocation after this round, with a checkpoint (a rerun continues from it);
    0 = run to the end."""
    tensorboard: bool = True
    """Also write TensorBoard events when tensorboard is installed (JSONL is always written)."""
    resume: bool = True
    """Continue from the newest checkpoint in the output folder that loads (each one skipped is
    logged); false refuses a folder that already holds checkpoints."""

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.rollout_cache_fraction <= 1.0:
            raise ValueError(f"rollout_cache_fraction must be in [0, 1] (0 = no cap), got "
                             f"{self.rollout_cache_fraction}")
        for name in ("steps", "prompts_per_step", "group_size", "max_turns", "max_new_tokens",
                     "epochs", "minibatches", "rollout_batch", "difficulty", "log_every",
                     "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_seq_len <= self.max_new_tokens:
            raise ValueError(f"max_seq_len ({self.max_seq_len}) must exceed max_new_tokens "
                             f"({self.max_new_tokens}): the prompt needs room too")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (RL samples; log-probs need a tempered "
                             f"distribution), got {self.temperature}")
        for name in ("eval_tasks", "eval_temperature", "eval_every", "micro_batch_tokens",
                     "loss_chunk_tokens", "checkpoint_every", "max_steps", "stop_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.clip_low < 0 or self.clip_low >= 1 or self.clip_high < 0:
            raise ValueError(f"clip_low must be in [0, 1) and clip_high >= 0, got "
                             f"{self.clip_low}, {self.clip_high}")
        if self.kl_coef < 0 or self.mismatch_threshold <= 0 or self.loss_scale_init <= 0:
            raise ValueError("kl_coef must be >= 0; mismatch_threshold and loss_scale_init > 0")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if not self.rewards:
            raise ValueError("rewards must name at least one reward, e.g. {env = 1.0}")
        if self.prompts_per_step * self.group_size % self.minibatches:
            raise ValueError(f"minibatches ({self.minibatches}) must divide the "
                             f"{self.prompts_per_step * self.group_size} episodes of a round")
