"""Metrics: the STYLE.md step line, MFU, the JSONL/TensorBoard sink."""

from __future__ import annotations

import json

import pytest

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
