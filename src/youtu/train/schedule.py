"""Learning-rate schedule and stage plan: pure functions of the step.

Warmup-stable-decay (WSD; Hu et al. 2024, MiniCPM; Hägele et al. 2024): a linear warmup, a long
plateau at the peak LR, then a decay to a floor. The decay can span several curriculum stages
(the paper's general mid-training and agentic stages both decay), because the LR is a function
of the global step only, never of which stage or process computed it.

    plan = plan_stages(cfg.train.stages, base_rope_theta=cfg.model.rope_theta,
                       base_rope_scaling=cfg.model.rope_scaling)
    sched = wsd_for_plan(plan, peak_lr=3e-3, warmup_steps=20, decay="1-sqrt", min_lr_ratio=0.1)
    lr = sched.lr(step)        # step = optimizer updates already done (0 for the first update)

Conventions: step s is the (s+1)-th optimizer update; a stage covers steps
[start_step, end_step). Warmup and decay are both inclusive of their last step: the first
update runs at peak/warmup_steps, the last warmup update at the peak, the last decay update at
the floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from youtu.model.config import RopeScaling

Decay = Literal["linear", "cosine", "1-sqrt"]
LR_PHASES = ("warmup_stable", "stable", "decay")


def decay_factor(progress: float, decay: Decay) -> float:
    """How much of the (peak - floor) gap remains at `progress` in [0, 1] through the decay.

    1-sqrt (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations") matches a full cosine run's final loss with a 20% cooldown.
    """
    p = min(max(progress, 0.0), 1.0)
    if decay == "linear":
        return 1.0 - p
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if decay == "1-sqrt":
        return 1.0 - math.sqrt(p)
    raise ValueError(f"decay must be one of linear, cosine, 1-sqrt; got {decay!r}")


def wsd_lr(step: int, *, peak_lr: float, warmup_steps: int, decay_start: int, decay_end: int,
           decay: Decay = "1-sqrt", min_lr_ratio: float = 0.0) -> float:
    """Learning rate of optimizer update `step` (0-based) under warmup-stable-decay.

    Args:
        step: updates already done.
        peak_lr: plateau LR.
        warmup_steps: updates 0..warmup_steps-1 ramp linearly to the peak.
        decay_start: first update of the decay.
        decay_end: one past the last update of the decay; from here on the LR is the floor.
        decay: decay shape.
        min_lr_ratio: floor as a fraction of the peak.

    Returns:
        The LR. When warmup and decay overlap (very short runs) the smaller factor wins.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if decay_end < decay_start:
        raise ValueError(f"decay_end ({decay_end}) must be >= decay_start ({decay_start})")
    factor = 1.0
    if step < warmup_steps:
        factor = (step + 1) / warmup_steps
    if step >= decay_start:
        n = decay_end - decay_start
        progress = 1.0 if n == 0 else (step - decay_start + 1) / n
        floor_factor = min_lr_ratio + (1.0 - min_lr_ratio) * decay_factor(progress, decay)
        factor = min(factor, floor_factor)
    return peak_lr * factor


@dataclass(frozen=True)
class WSD:
    """A warmup-stable-decay schedule with its numbers fixed (see `wsd_lr`)."""

    peak_lr: float
    warmup_steps: int
    decay_start: int
    decay_end: int
    decay: Decay = "1-sqrt"
    min_lr_ratio: float = 0.0

    def lr(self, step: int) -> float:
        """LR of update `step` (0-based)."""
        return wsd_lr(step, peak_lr=self.peak_lr, warmup_steps=self.warmup_steps,
                      decay_start=self.decay_start, decay_end=self.decay_end, decay=self.decay,
                      min_lr_ratio=self.min_lr_ratio)


# ---- stage plan ---------------------------------------------------------------------------------


class _Stage(Protocol):
    name: str
    tokens: int
    seq_len: int
    batch_tokens: int
    lr_phase: str
    rope_theta: float
    yarn_factor: float
    yarn_original_seq_len: int


@dataclass(frozen=True)
class StageSpan:
    """One curriculum stage placed on the global step axis."""

    index: int
    """Position in the curriculum (what the data sampler calls stage_index)."""
    name: str
    start_step: int
    """First update of the stage."""
    end_step: int
    """One past its last update."""
    seq_len: int
    """Row length in tokens."""
    rows: int
    """Global rows per update (batch_tokens // seq_len)."""
    rope_theta: float
    """RoPE base in effect during the stage (carried over from earlier stages when unset)."""
    lr_phase: str
    yarn_factor: float = 1.0
    """YaRN factor in effect during the stage (carried over like rope_theta); 1 = plain RoPE."""
    yarn_original_seq_len: int = 0
    """The context the YaRN factor extends (original_max_position_embeddings); 0 when off."""

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step

    @property
    def batch_tokens(self) -> int:
        return self.rows * self.seq_len

    @property
    def tokens(self) -> int:
        """Tokens the stage actually trains on (its budget rounded up to whole batches)."""
        return self.steps * self.batch_tokens


def plan_stages(stages: Sequence[_Stage], base_rope_theta: float, max_steps: int = 0, *,
                base_rope_scaling: RopeScaling | None = None) -> list[StageSpan]:
    """Turn the stages' token budgets and batch sizes into consecutive step ranges.

    Each stage gets ceil(tokens / batch_tokens) updates, so it sees at least its budget. RoPE
    settings carry over: a stage with rope_theta / yarn_factor 0 keeps the previous stage's
    (the model's own for the first). A stage's YaRN factor extends `yarn_original_seq_len`,
    or the previous stage's seq_len when that is 0 (YaRN rescales the context the model was
    trained at: e.g. 32k -> 128k is factor 4 over the 32k stage).

    Args:
        stages: the curriculum (`StageConfig`s), in order.
        base_rope_theta: the model's RoPE base before any stage changes it.
        max_steps: when > 0 and the plan is longer, every stage's steps are scaled by
            max_steps / total (floored, at least 1): the same curriculum in miniature.
        base_rope_scaling: the model's YaRN scaling before any stage changes it (None = none).

    Raises:
        ValueError: naming the stage, for a batch that is not whole rows, an empty budget, an
            unknown lr_phase, decay stages that are not the trailing ones, or a first stage
            setting yarn_factor without yarn_original_seq_len.
    """
    if not stages:
        raise ValueError("the curriculum has no stages")
    for i, st in enumerate(stages):
        where = f"stage {i} ({st.name!r})"
        if st.seq_len <= 0 or st.batch_tokens <= 0 or st.batch_tokens % st.seq_len:
            raise ValueError(f"{where}: batch_tokens ({st.batch_tokens}) must be a positive "
                             f"multiple of seq_len ({st.seq_len})")
        if st.tokens <= 0:
            raise ValueError(f"{where}: tokens must be positive, got {st.tokens}")
        if st.lr_phase not in LR_PHASES:
            raise ValueError(f"{where}: lr_phase must be one of {', '.join(LR_PHASES)}, "
                             f"got {st.lr_phase!r}")
        if st.lr_phase == "warmup_stable" and i != 0:
            raise ValueError(f"{where}: lr_phase 'warmup_stable' is only for the first stage")
        if i and stages[i - 1].lr_phase == "decay" and st.lr_phase != "decay":
            raise ValueError(f"{where}: lr_phase {st.lr_phase!r} after a 'decay' stage; the "
                             "decay stages must be the trailing ones (the LR never rises again)")
        if i == 0 and st.yarn_factor > 1.0 and not st.yarn_original_seq_len:
            raise ValueError(f"{where}: yarn_factor {st.yarn_factor:g} in the first stage needs "
                             "yarn_original_seq_len (there is no previous stage's seq_len to "
                             "extend)")
    counts = [-(-st.tokens // st.batch_tokens) for st in stages]
    if 0 < max_steps < sum(counts):
        counts = [max(1, n * max_steps // sum(counts)) for n in counts]
    spans, step, theta = [], 0, base_rope_theta
    yarn = ((base_rope_scaling.factor, base_rope_scaling.original_max_position_embeddings)
            if base_rope_scaling is not None and base_rope_scaling.factor > 1.0 else (1.0, 0))
    for i, (st, steps) in enumerate(zip(stages, counts)):
        theta = st.rope_theta or theta
        if st.yarn_factor == 1.0:
            yarn = (1.0, 0)
        elif st.yarn_factor:
            yarn = (st.yarn_factor, st.yarn_original_seq_len or stages[i - 1].seq_len)
        spans.append(StageSpan(index=i, name=st.name, start_step=step, end_step=step + steps,
                               seq_len=st.seq_len, rows=st.batch_tokens // st.seq_len,
                               rope_theta=theta, lr_phase=st.lr_phase, yarn_factor=yarn[0],
                               yarn_original_seq_len=yarn[1]))
        step += steps
    return spans


def total_steps(plan: Sequence[StageSpan]) -> int:
    """Updates in the whole plan."""
    return plan[-1].end_step


def decay_range(plan: Sequence[StageSpan]) -> tuple[int, int]:
    """(decay_start, decay_end): from the first 'decay' stage to the end of the plan; an empty
    range at the end when no stage decays (the LR then stays at the peak)."""
    end = total_steps(plan)
    start = next((s.start_step for s in plan if s.lr_phase == "decay"), end)
    return start, end


def wsd_for_plan(plan: Sequence[StageSpan], *, peak_lr: float, warmup_steps: int,
                 decay: Decay, min_lr_ratio: float) -> WSD:
    """The WSD schedule of a curriculum: warmup at the start, decay over the 'decay' stages."""
    start, end = decay_range(plan)
    if warmup_steps > start:
        raise ValueError(f"warmup_steps ({warmup_steps}) runs into the decay, which starts at "
                         f"step {start}; shorten the warmup or lengthen the stable stages")
    return WSD(peak_lr=peak_lr, warmup_steps=warmup_steps, decay_start=start, decay_end=end,
               decay=decay, min_lr_ratio=min_lr_ratio)


def stage_at(plan: Sequence[StageSpan], step: int) -> StageSpan:
    """The stage that update `step` belongs to."""
    for span in plan:
        if span.start_step <= step < span.end_step:
            return span
    raise ValueError(f"step {step} is outside the plan (0..{total_steps(plan) - 1})")


def select_stages(plan: Sequence[StageSpan], names: Sequence[str]) -> list[StageSpan]:
    """The contiguous run of stages named (all when `names` is empty), in plan order."""
    if not names:
        return list(plan)
    by_name = {s.name: s for s in plan}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"unknown stage(s) {missing}; the plan has {list(by_name)}")
    chosen = sorted((by_name[n] for n in names), key=lambda s: s.index)
    if [s.index for s in chosen] != list(range(chosen[0].index, chosen[-1].index + 1)):
        raise ValueError(f"stages {list(names)} are not contiguous in the plan {list(by_name)}")
    return chosen
