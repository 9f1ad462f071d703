"""torchrun with 2 gloo processes and FSDP2: the same losses as one process at the same global
batch, DCP checkpoints, resume from its own checkpoint, a SIGTERM to one rank stopping all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _workers(agent_pid: int) -> dict[int, int]:
    """rank -> pid of the worker processes torchrun started."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0") if ppid == agent_pid else []
        except (OSError, IndexError, ValueError):
            continue
        rank = [e for e in env if e.startswith(b"RANK=")]
        if rank:
            out[int(rank[0][5:])] = int(entry.name)
    return out


@pytest.mark.slow  # two torchrun launches: ~45 s on this machine
def test_sigterm_to_one_rank_stops_every_rank_at_one_step_with_a_checkpoint(
        reference_run, tiny_toml, tmp_path):
    """Slurm may signal the ranks at different moments: the ranks agree on the step to stop at
    (the checkpoint is collective), and the torchrun rerun resumes from it."""
    _, ref = reference_run
    out = tmp_path / "sig"
    folder = out / "t" / "train"
    log = tmp_path / "torchrun.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "youtu", "train", str(tiny_toml), f"--out_dir={out}"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 240
        while not ((folder / "metrics.jsonl").is_file()
                   and len(read_metrics(folder / "metrics.jsonl", "train/loss")) >= 2):
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        rank1 = _workers(proc.pid)[1]
        os.kill(rank1, signal.SIGSTOP)  # both ranks wait in a collective: no race with the end
        os.kill(rank1, signal.SIGTERM)  # rank 1 only
        os.kill(rank1, signal.SIGCONT)
        proc.wait(timeout=240)
    text = log.read_text()
    stopped_at = max(read_metrics(folder / "metrics.jsonl", "train/loss"))
    assert stopped_at < 16 and text.count(f"stopped by SIGTERM after step {stopped_at}") == 2, \
        text[-3000:]
    assert "exitcode  : 143" in text or "exitcode: 143" in text.replace("  ", " "), text[-3000:]
    latest = ckpt.latest_checkpoint(folder)
    assert ckpt.read_marker(latest)["step"] == stopped_at
    assert ckpt.read_marker(latest)["world_size"] == 2
    _torchrun(tiny_toml, out)  # resumes from it
    _assert_losses_match(read_metrics(folder / "metrics.jsonl", "train/loss"), ref, range(1, 17))
