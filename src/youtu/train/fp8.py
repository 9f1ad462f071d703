"""FP8 training of the transformer blocks' linears through torchao.float8.

    youtu train configs/youtu-2b.toml --train.fp8=tensorwise --train.compile=true

`apply_fp8` swaps every eligible `nn.Linear` inside the blocks for torchao's `Float8Linear`
(`torchao.float8.convert_to_float8_training`): inputs, weights and output gradients are cast
to float8 (e4m3 forward, e5m2 gradients) with dynamic scales and multiplied by
`torch._scaled_mm`; the master weights, optimizer state and everything outside the blocks stay
as they were. Not converted, as torchao recommends: the embedding and the tied lm_head (the
logits are the most precision-sensitive matmul, and the lm_head is the embedding here), and
linears whose dimensions are not multiples of 16 (`_scaled_mm` needs them).

Order: FP8 conversion first, then activation checkpointing, compile and FSDP2 (as torchtitan
applies its float8 converter before parallelising). torchao is optional: `pip install
'youtu[gpu]'` (0.18 works with torch 2.11 and 2.13). FP8 tensor cores need compute capability
>= 8.9 (Ada, Hopper and newer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from youtu.errors import ConfigError

logger = logging.getLogger(__name__)

FP8_RECIPES = ("tensorwise", "rowwise")
"""torchao's recipe names: one scale per tensor, or one per row (axiswise, more accurate)."""

FP8_MIN_CAPABILITY = (8, 9)
"""float8 tensor cores: Ada (8.9) and Hopper (9.0) or newer."""


def fp8_eligible(module: nn.Module, fqn: str) -> bool:
    """True for a linear FP8 may replace: not the lm_head, both dims multiples of 16."""
    if not isinstance(module, nn.Linear) or fqn.split(".")[-1] == "lm_head":
        return False
    out_features, in_features = module.weight.shape
    return in_features % 16 == 0 and out_features % 16 == 0


def _torchao_float8():
    try:
        import torchao.float8 as float8
        from torchao.float8.float8_linear import Float8Linear
    except ImportError as e:
        raise ImportError("train.fp8 needs torchao: pip install 'youtu[gpu]' (or pip install "
                          "torchao>=0.18), or set --train.fp8=off") from e
    return float8, Float8Linear


def check_fp8_device(recipe: str, device: torch.device) -> None:
    """Raise ConfigError when `recipe` cannot run on `device` (a CPU, an older GPU)."""
    if recipe not in FP8_RECIPES:
        raise ConfigError(f"train.fp8: {recipe!r} is not one of off, {', '.join(FP8_RECIPES)}")
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(f"train.fp8={recipe} needs a CUDA GPU (the run's device is "
                          f"{device.type}); set --train.fp8=off on this machine")
    cap = torch.cuda.get_device_capability(device)
    if cap < FP8_MIN_CAPABILITY:
        raise ConfigError(f"train.fp8={recipe} needs FP8 tensor cores (compute capability >= "
                          f"8.9); {torch.cuda.get_device_name(device)} has {cap[0]}.{cap[1]}: "
                          "set --train.fp8=off")


FP8_LINEARS = ("all", "auto")
"""Which block linears convert: every eligible one, or torchao's shape heuristic
(`_auto_filter_for_recipe`, from its H100 tables) that keeps in bf16 the ones FP8 makes slower
(for the 2B: tensorwise skips kv_a_proj_with_mqa; rowwise converts only gate_proj/up_proj)."""


def _filter(recipe: str, linears: str):
    if linears == "all":
        return fp8_eligible
    if linears != "auto":
        raise ConfigError(f"train.fp8_linears: {linears!r} is not one of {', '.join(FP8_LINEARS)}")
    from torchao.float8.float8_linear_utils import _auto_filter_for_recipe

    return _auto_filter_for_recipe(recipe, filter_fqns=["lm_head"])


def convert_blocks(blocks: Iterable[nn.Module], recipe: str, linears: str = "all") -> int:
    """Swap the eligible linears of `blocks` for Float8Linear with `recipe`'s scaling (no
    device check: `apply_fp8` is the entry point); returns how many were swapped.

    Args:
        blocks: the transformer blocks.
        recipe: 'tensorwise' or 'rowwise'.
        linears: 'all' (every `fp8_eligible` linear) or 'auto' (torchao's shape heuristic).
    """
    float8, float8_linear = _torchao_float8()
    config = float8.Float8LinearConfig.from_recipe_name(recipe)
    keep = _filter(recipe, linears)
    converted = 0
    for block in blocks:
        float8.convert_to_float8_training(block, config=config, module_filter_fn=keep)
        converted += sum(isinstance(m, float8_linear) for m in block.modules())
    return converted


def apply_fp8(blocks: Iterable[nn.Module], cfg, device: torch.device) -> int:
    """Convert the block linears to torchao Float8Linear as the config says, in place.

    Args:
        blocks: the transformer blocks (the embedding and lm_head live outside them).
        cfg: the loop settings: `fp8` ('off', 'tensorwise', 'rowwise'; TrainConfig only, so
            SFT's config means 'off'), `fp8_linears`, and `compile` (a warning without it:
            eager FP8 runs the scaling and casts as separate kernels, slower than bf16).
        device: the run's device (FP8 needs CUDA with compute capability >= 8.9).

    Returns:
        The number of linears converted.
    """
    recipe = getattr(cfg, "fp8", "off")
    if recipe == "off":
        return 0
    check_fp8_device(recipe, device)
    linears = getattr(cfg, "fp8_linears", "all")
    converted = convert_blocks(blocks, recipe, linears)
    if not cfg.compile:
        logger.warning("train.fp8=%s without train.compile: eager FP8 is slower than bf16 "
                       "(the casts are not fused); set --train.compile=true", recipe)
    logger.info("fp8 (%s, %s linears): %d linears in the blocks run in float8", recipe, linears,
                converted)
    return converted
