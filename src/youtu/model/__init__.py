"""youtu.model: the Youtu-LLM MLA transformer, its latent KV cache and Hugging Face interop.

    from youtu.model import ModelConfig, YoutuForCausalLM, LatentCache
    from youtu.model.hf import load_pretrained, save_pretrained

The names load on first use (PEP 562): `youtu.model.config` is plain dataclasses that
`youtu.config` reads, and importing it must not import torch (the CLI's import, which every
worker process of `youtu data prepare` repeats, stays ~0.2 s instead of ~1.2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from youtu.model.cache import LatentCache
    from youtu.model.config import ModelConfig
    from youtu.model.transformer import YoutuForCausalLM

__all__ = ["LatentCache", "ModelConfig", "YoutuForCausalLM"]

_HOMES = {"LatentCache": "youtu.model.cache", "ModelConfig": "youtu.model.config",
          "YoutuForCausalLM": "youtu.model.transformer"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'youtu.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
