"""FP8 training (youtu.train.fp8): which linears convert, the errors on CPU and without torchao,
and (gpu) losses close to bf16 through the real Trainer."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from youtu.errors import ConfigError
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train.config import TrainConfig
from youtu.train.fp8 import apply_fp8, convert_blocks, fp8_eligible


def _tiny(seed: int = 0) -> YoutuForCausalLM:
    torch.manual_seed(seed)
    model = YoutuForCausalLM(ModelConfig.tiny(vocab_size=512))
    model.init_weights()
    return model


def test_eligible_linears_skip_lm_head_and_odd_shapes():
    assert fp8_eligible(nn.Linear(128, 64, bias=False), "model.layers.0.mlp.up_proj")
    assert not fp8_eligible(nn.Linear(128, 512, bias=False), "lm_head")
    assert not fp8_eligible(nn.Linear(100, 64, bias=False), "x.proj")  # _scaled_mm needs %16
    assert not fp8_eligible(nn.Embedding(10, 16), "model.embed_tokens")


def test_fp8_on_cpu_is_a_clear_config_error():
    with pytest.raises(ConfigError, match=r"train.fp8=rowwise needs a CUDA GPU.*--train.fp8=off"):
        apply_fp8(_tiny().model.layers, TrainConfig(fp8="rowwise"), torch.device("cpu"))
    assert apply_fp8(_tiny().model.layers, TrainConfig(), torch.device("cpu")) == 0
    with pytest.raises(ValueError, match="fp8 must be"):
        TrainConfig(fp8="e4m3")


def test_missing_torchao_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.float8", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'youtu\[gpu\]'"):
        convert_blocks(_tiny().model.layers, "tensorwise")


def test_conversion_swaps_block_linears_only_and_keeps_the_function():
    pytest.importorskip("torchao.float8")
    from torchao.float8.float8_linear import Float8Linear

    model = _tiny()
    keys = set(model.state_dict())
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(0))

    def loss_and_logits():
        logits = model(ids)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        return float(loss.detach()), logits

    ref_loss, ref = loss_and_logits()
    n = convert_blocks(model.model.layers, "tensorwise")
    assert n == 4 * 8  # q_a, q_b, kv_a, kv_b, o, gate, up, down in each of the 4 blocks
    assert not isinstance(model.lm_head, Float8Linear)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert set(model.state_dict()) == keys  # checkpoints keep their names
    try:
        loss, out = loss_and_logits()
    except (RuntimeError, NotImplementedError) as e:  # no float8 matmul on this CPU build
        pytest.skip(f"float8 matmul unavailable on CPU: {e}")
    # e4m3 keeps 3 mantissa bits: the tiny model's logits move by ~14% (measured, 2 seeds, both
    # recipes), so they were quantised; the loss by < 0.3%
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0.01 < rel < 0.3, rel
    assert loss == pytest.approx(ref_loss, rel=1e-2)


@pytest.mark.parametrize("recipe, kept", [
    ("tensorwise", {"q_a_proj", "q_b_proj", "kv_b_proj", "o_proj", "gate_proj", "up_proj",
                    "down_proj"}),
    ("rowwise", {"gate_proj", "up_proj"}),
])
def test_auto_linears_follow_torchao_shape_heuristic_at_2b(recipe, kept):
    pytest.importorskip("torchao.float8")
    from torchao.float8.float8_linear import Float8Linear

    with torch.device("meta"):
        model = YoutuForCausalLM(ModelConfig.youtu_2b())
    block = model.model.layers[0]
    assert convert_blocks([block], recipe, "auto") == len(kept)
    assert {n.split(".")[-1] for n, m in block.named_modules() if isinstance(m, Float8Linear)} == kept
    with pytest.raises(ConfigError, match="fp8_linears"):
        convert_blocks([model.model.layers[1]], recipe, "most")


def _losses(fp8: str, steps: int = 6) -> list[float]:
    import tempfile

    from youtu.data.packing import PackedBatch
    from youtu.train.parallel import Dist
    from youtu.train.schedule import StageSpan
    from youtu.train.trainer import Trainer

    model = _tiny()
    cfg = TrainConfig(lr=1e-3, fp8=fp8, tensorboard=False, spike_factor=0.0)
    g = torch.Generator().manual_seed(0)
    span = StageSpan(index=0, name="t", start_step=0, end_step=steps, seq_len=128, rows=4,
                     rope_theta=model.config.rope_theta, lr_phase="stable")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, model, dist=Dist(device=torch.device("cuda")), out_dir=tmp)
        out = []
        for _ in range(steps):
            ids = torch.randint(0, 256, (4, 129), generator=g)
            batch = PackedBatch(ids[:, :-1].contiguous(), ids[:, 1:].contiguous(),
                                torch.arange(128).expand(4, 128).contiguous(),
                                torch.zeros(4, 128, dtype=torch.long))
            out.append(trainer.train_step(batch, 1e-3, span).loss)
        trainer.close()
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_fp8_training_steps_stay_close_to_bf16(recipe):
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("needs a GPU with FP8 tensor cores")
    pytest.importorskip("torchao.float8")
    bf16, fp8 = _losses("off"), _losses(recipe)
    assert fp8[-1] < fp8[0] - 0.05  # it trains
    for a, b in zip(bf16, fp8):
        assert b == pytest.approx(a, rel=2e-2)
