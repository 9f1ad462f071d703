"""Fixtures for youtu.model tests: tiny configs (2 layers, vocab 512), fp32 on CPU.

`make_config(variant)` gives 'qlora' (q_a/q_b path), 'noqlora' (plain q_proj) or 'yarn'
(q-LoRA + YaRN x4); `make_model(cfg_or_variant)` builds and initialises one in eval mode.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.config import RopeScaling

VOCAB = 512


def _config(variant: str = "qlora") -> ModelConfig:
    cfg = ModelConfig.tiny(vocab_size=VOCAB)
    cfg.num_hidden_layers = 2
    cfg.max_position_embeddings = 256
    if variant == "noqlora":
        cfg.q_lora_rank = 0
    elif variant == "yarn":
        cfg.rope_scaling = RopeScaling(factor=4.0, original_max_position_embeddings=64,
                                       beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=0.707)
    else:
        assert variant == "qlora", variant
    return cfg


def _model(cfg: ModelConfig | str = "qlora", seed: int = 0) -> YoutuForCausalLM:
    if isinstance(cfg, str):
        cfg = _config(cfg)
    torch.manual_seed(seed)
    model = YoutuForCausalLM(cfg)
    model.init_weights()
    return model.eval()


@pytest.fixture
def make_config() -> Callable[..., ModelConfig]:
    return _config


@pytest.fixture
def make_model() -> Callable[..., YoutuForCausalLM]:
    return _model


@pytest.fixture
def model() -> YoutuForCausalLM:
    return _model("qlora")
