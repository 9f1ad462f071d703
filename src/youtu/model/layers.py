"""Building blocks of the Youtu-LLM transformer: RMSNorm, SwiGLU MLP, rotary embeddings (+ YaRN).

References: RMSNorm (Zhang & Sennrich 2019), SwiGLU (Shazeer 2020), RoPE (Su et al. 2021),
YaRN (Peng et al. 2023) in the DeepSeek-V2/V3 form, which is what Youtu-LLM and transformers'
`youtu` / `deepseek_v3` models implement.

Shape legend: B batch, T tokens, H heads, R = qk_rope_head_dim (the rotated slice of a head).

RoPE layout. DeepSeek checkpoints rotate *interleaved* pairs (x0, x1), (x2, x3), ... of the rope
slice, each pair by one frequency. `apply_rope` rotates those pairs and writes the result
de-interleaved, [rotated evens | rotated odds], exactly like transformers'
`apply_rotary_pos_emb_interleave`. Queries and keys get the same permutation, so q.k (the only
thing attention sees) equals the interleaved result; the latent cache stores keys in this layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from youtu.model.config import ModelConfig, RopeScaling


# ---- pure functions ----------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in fp32, cast back to x's dtype, then scaled (transformers' order)."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN attention temperature 0.1 * mscale * ln(factor) + 1 (1 when not extending)."""
    if factor <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(factor) + 1.0


def rope_inv_freq(dim: int, theta: float, scaling: RopeScaling | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies for a `dim`-wide rope slice, and the factor cos/sin are scaled by.

    Without scaling: theta ** (-2i / dim), factor 1. With YaRN: dimensions that complete more
    than `beta_fast` turns over the original context keep their frequency, those under
    `beta_slow` turns are divided by `factor`, and a linear ramp blends the ones between (the
    correction range is floor/ceil-truncated as in DeepSeek's code). The returned factor
    mscale(factor, mscale) / mscale(factor, mscale_all_dim) multiplies cos and sin, as DeepSeek
    and transformers do.

    Args:
        dim: rope slice width R (even).
        theta: RoPE base.
        scaling: YaRN parameters, or None for plain RoPE.

    Returns:
        (inv_freq [R/2] fp32, cos/sin multiplier).
    """
    # Built on the CPU even under a meta-device context (the table is tiny and never sharded).
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim
    inv_freq = 1.0 / (theta ** exponents)
    if scaling is None or scaling.factor == 1.0:
        return inv_freq, 1.0

    def correction_dim(turns: float) -> float:
        return dim * math.log(scaling.original_max_position_embeddings / (turns * 2 * math.pi)) / (
            2 * math.log(theta))

    low = max(math.floor(correction_dim(scaling.beta_fast)), 0)
    high = min(math.ceil(correction_dim(scaling.beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    keep = 1.0 - ramp  # 1 = keep the original (extrapolated) frequency
    inv_freq = inv_freq / scaling.factor * (1 - keep) + inv_freq * keep
    if scaling.mscale and scaling.mscale_all_dim:
        attn_factor = yarn_mscale(scaling.factor, scaling.mscale) / yarn_mscale(
            scaling.factor, scaling.mscale_all_dim)
    else:
        attn_factor = yarn_mscale(scaling.factor)
    return inv_freq, attn_factor


def attention_scale(cfg: ModelConfig) -> float:
    """Softmax scale: qk_head_dim ** -0.5 (192 ** -0.5 for the 2B), times YaRN
    mscale(factor, mscale_all_dim) ** 2 only when YaRN is on (DeepSeek-V2 convention)."""
    scale = cfg.qk_head_dim ** -0.5
    rs = cfg.rope_scaling
    if rs is not None and rs.mscale_all_dim:
        scale *= yarn_mscale(rs.factor, rs.mscale_all_dim) ** 2
    return scale


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attn_factor: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [B, T, R/2] for integer `positions` [B, T] (angles computed in fp32)."""
    angles = positions.float()[..., None] * inv_freq.float().to(positions.device)
    return (angles.cos() * attn_factor).to(dtype), (angles.sin() * attn_factor).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [B, T, H, R] by cos/sin [B, T, R/2].

    Output layout is [rotated evens | rotated odds] (see the module docstring).
    """
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# ---- modules -----------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale (`weight`, init 1)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def fuse_rows_(*linears: nn.Linear) -> torch.Tensor:
    """Lay the weights of `linears` (same input size) out as consecutive rows of one new
    [sum(out), in] tensor and make each weight a view of its rows, in place; returns the tensor.

    The parameters keep their identity, names, values and flags: `state_dict()`, optimizers,
    tied references and in-place updates (`copy_`, an optimizer step) all reach the shared
    storage, and the old storages are freed, so memory does not grow. Anything that replaces a
    parameter's data afterwards (`.to(dtype)`, `load_state_dict(assign=True)`, `deepcopy`)
    unlinks it again: check with `rows_are_fused`.
    """
    # Not an inference tensor even when called under inference_mode (an engine built there):
    # later in-place updates outside it (refresh_sampler, an optimizer step) must stay legal.
    with torch.inference_mode(False), torch.no_grad():
        fused = torch.cat([m.weight.detach() for m in linears])
    start = 0
    for m in linears:
        n = m.weight.shape[0]
        m.weight.data = fused[start:start + n]
        start += n
    return fused


def rows_are_fused(fused: torch.Tensor | None, *linears: nn.Linear) -> bool:
    """Whether the weights of `linears` are still the consecutive row blocks of `fused`."""
    if fused is None:
        return False
    start = 0
    for m in linears:
        w = m.weight
        n = w.shape[0]
        if (w.dtype != fused.dtype or w.device != fused.device or start + n > fused.shape[0]
                or w.data_ptr() != fused[start].data_ptr() or not w.is_contiguous()):
            return False
        start += n
    return start == fused.shape[0]


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)).

    Decode reads each weight once per token, so one [2I, D] GEMV for gate and up (`fuse_`, then
    `forward_fused`) replaces two half-full ones; training keeps the separate Linears (the fused
    tensor is no parameter and carries no gradient).
    """

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.gate_up: torch.Tensor | None = None  # [2I, D] after fuse_(): gate rows, then up rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def __getstate__(self) -> dict:
        # deepcopy / pickle copy the parameters one by one, so a copy's weights are no views
        # of a copied gate_up: drop it (a stale second copy of the MLP) and let fuse_() redo it.
        return {**self.__dict__, "gate_up": None}

    @property
    def fused(self) -> bool:
        """Whether gate_proj / up_proj are the two halves of `gate_up`."""
        return rows_are_fused(self.gate_up, self.gate_proj, self.up_proj)

    @torch.no_grad()
    def fuse_(self) -> None:
        """Make gate_proj and up_proj views of one [2I, D] weight `gate_up` (see `fuse_rows_`);
        a no-op when they already are."""
        if not self.fused:
            self.gate_up = fuse_rows_(self.gate_proj, self.up_proj)

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` with one GEMV for gate and up (after `fuse_`; no gradient reaches them)."""
        assert self.gate_up is not None, "call fuse_() first"
        gate, up = F.linear(x, self.gate_up).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)
