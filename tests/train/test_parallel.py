"""torchrun with 2 gloo processes and FSDP2: the same losses as one process at the same global
batch, DCP checkpoints, resume from its own checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from youtu.model.hf import load_pretrained
from youtu.train import checkpoint as ckpt
from youtu.train.metrics import read_metrics

RTOL = 1e-5  # fp32 reduction order: the loss sums of two ranks are added in another order


def _torchrun(tiny_toml, out, *overrides):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "youtu", "train", str(tiny_toml), f"--out_dir={out}",
           *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out / "t" / "train"


def _assert_losses_match(losses, ref, steps):
    assert sorted(losses) == list(steps)
    for step in steps:
        assert losses[step] == pytest.approx(ref[step], rel=RTOL), step


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_toml):
    out = tmp_path_factory.mktemp("fsdp")
    return _torchrun(tiny_toml, out, "--train.stop_after=6")


def test_fsdp_two_processes_match_one(two_process_run, reference_run):
    _, ref = reference_run
    losses = read_metrics(two_process_run / "metrics.jsonl", "train/loss")
    _assert_losses_match(losses, ref, range(1, 7))  # crosses the stage 1 -> 2 boundary at 4
    stop = two_process_run / "step_00000006"
    assert ckpt.read_marker(stop)["world_size"] == 2
    assert sorted(p.name for p in (stop / ckpt.SHARDED_DIR).glob("*.distcp")) == ["__0_0.distcp",
                                                                                 "__1_0.distcp"]
    # the HF folder gathered on rank 0 is a complete single-file model
    model = load_pretrained(stop)
    assert model.num_params() > 0


def test_fsdp_resumes_from_its_own_checkpoint(two_process_run, reference_run, tiny_toml):
    ref_dir, ref = reference_run
    out = two_process_run.parent.parent
    _torchrun(tiny_toml, out)  # continues from step_00000006 (DCP shards) to the end
    losses = read_metrics(two_process_run / "metrics.jsonl", "train/loss")
    _assert_losses_match(losses, ref, range(1, 17))
    a = load_file(two_process_run / "stage_agent" / "model.safetensors")
    b = load_file(ref_dir / "stage_agent" / "model.safetensors")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
