"""Metrics: the STYLE.md step line, MFU, the JSONL/TensorBoard sink."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from youtu.train.metrics import (MetricsSink, human_count, human_duration, mfu, peak_flops,
                                 read_metrics, step_line)


def test_step_line_matches_style_md():
    line = step_line(step=120, total=2000, stage="stem", loss=3.2141, lr=3e-4, gnorm=0.8412,
                     tokens_per_s=1.27e6, mfu=0.412, eta_s=36 * 60)
    assert line == ("step 120/2000 | stage stem | loss 3.214 | lr 3.0e-04 | gnorm 0.84 | "
                    "tok/s 1.27M | mfu 41.2% | eta 36m")
    cpu = step_line(step=1, total=2, stage="a", loss=1.0, lr=1e-3, gnorm=1.0, tokens_per_s=812,
                    mfu=None, eta_s=5)
    assert "mfu" not in cpu and cpu.endswith("tok/s 812 | eta 5s")


def test_human_units():
    assert human_count(5300) == "5.30k" and human_count(2.5e9) == "2.50G"
    assert human_duration(7500) == "2h05m" and human_duration(float("inf")) == "?"


def test_mfu_against_the_peak():
    # 26.1k tok/s of a 2B model (~12.7 GFLOP/token) on one 989 TFLOP/s device ~ 0.335
    assert mfu(26_100, 12.7e9, 989e12) == pytest.approx(26_100 * 12.7e9 / 989e12)
    assert mfu(1000, 1e9, 989e12, world_size=8) == pytest.approx(1e12 / (8 * 989e12))
    assert mfu(1000, 1e9, None) is None
    assert peak_flops("cpu") is None


def test_sink_writes_jsonl_and_tensorboard(tmp_path):
    sink = MetricsSink(tmp_path, tensorboard=True)
    sink.log(1, {"train/loss": 3.0, "data/tokens/stem": 10})
    sink.log(2, {"train/loss": float("nan")})
    sink.log(1, {"train/loss": 2.5})  # a resumed run rewrites step 1
    sink.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/loss"] == 3.0 and rows[0]["data/tokens/stem"] == 10.0
    assert rows[1]["train/loss"] is None
    assert read_metrics(tmp_path / "metrics.jsonl", "train/loss") == {1: 2.5}
    assert any((tmp_path / "tb").iterdir())  # tensorboard is a dev dependency


def test_disabled_sink_writes_nothing(tmp_path):
    sink = MetricsSink(tmp_path / "rank1", enabled=False)
    sink.log(1, {"train/loss": 1.0})
    sink.close()
    assert not (tmp_path / "rank1").exists()


class _RandomRows:
    """A BatchSource of random one-document rows."""

    def __init__(self, vocab: int):
        self.vocab, self.g = vocab, torch.Generator().manual_seed(0)

    def next_batch(self, stage_index: int, batch_size: int, seq_len: int):
        from youtu.data.packing import PackedBatch

        ids = torch.randint(0, self.vocab, (batch_size, seq_len + 1), generator=self.g)
        return PackedBatch(ids[:, :-1].contiguous(), ids[:, 1:].contiguous(),
                           torch.arange(seq_len).expand(batch_size, seq_len).contiguous(),
                           torch.zeros(batch_size, seq_len, dtype=torch.long))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "bench" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_throughput", module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


def test_trainer_log_and_bench_report_the_same_mfu(tmp_path):
    """One convention: the MFU the trainer logs for a step equals the one bench/train_throughput
    reports for the same tokens/s (both through flops_per_token's PaLM/torchtitan count)."""
    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.train.config import TrainConfig
    from youtu.train.parallel import Dist
    from youtu.train.schedule import WSD, StageSpan
    from youtu.train.trainer import Trainer

    cfg = ModelConfig.tiny(vocab_size=512)
    seq = 256  # long enough that the attention term is 11% of the FLOPs (causal would show)
    model = YoutuForCausalLM(cfg)
    model.init_weights()
    trainer = Trainer(TrainConfig(tensorboard=False, spike_factor=0.0), model,
                      dist=Dist(), out_dir=tmp_path)
    trainer.peak = 1e12  # a CPU has no peak: pretend one
    span = StageSpan(index=0, name="s", start_step=0, end_step=2, seq_len=seq, rows=2,
                     rope_theta=cfg.rope_theta, lr_phase="stable")
    trainer.run([span], WSD(peak_lr=1e-3, warmup_steps=1, decay_start=2, decay_end=2),
                _RandomRows(cfg.vocab_size), plan_total=2)
    trainer.close()
    logged = read_metrics(tmp_path / "metrics.jsonl", "train/mfu")
    tok_s = read_metrics(tmp_path / "metrics.jsonl", "train/tokens_per_s")
    bench = _bench_module()
    for step in (1, 2):
        assert logged[step] == pytest.approx(bench.bench_mfu(cfg, seq, tok_s[step], 1e12), rel=1e-9)
    causal = mfu(tok_s[2], model.flops_per_token(seq, causal=True), 1e12)
    assert abs(logged[2] / causal - 1) > 0.05  # the two conventions are told apart here


def test_a_full_disk_while_logging_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    """ENOSPC from the metrics file (the disk filled up mid-run) is the one-line WriteFailed the
    CLI prints, naming the folder, not an OSError traceback."""
    import errno

    from youtu.fsutil import WriteFailed
    from youtu.train.metrics import MetricsSink

    sink = MetricsSink(tmp_path, tensorboard=False)
    sink.log(1, {"train/loss": 1.0})

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(sink, "_file", Full())
    with pytest.raises(WriteFailed) as info:
        sink.log(2, {"train/loss": 0.9})
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    sink.close()
