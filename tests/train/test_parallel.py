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


# ---- activation checkpointing (one process, CPU) ------------------------------------------------


def _ac_model(mode):
    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.train.parallel import apply_activation_checkpointing

    torch.manual_seed(0)
    model = YoutuForCausalLM(ModelConfig.tiny(vocab_size=512))
    model.init_weights()
    apply_activation_checkpointing(model.model.layers, mode)
    return model


def _loss_and_grads(model, ids):
    logits = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _backward_matmuls(model, ids) -> int:
    """aten.mm calls during backward: the gradient matmuls plus whatever the forward recomputes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.mm.default:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    logits = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    with Count():
        loss.backward()
    return Count.n


@pytest.mark.parametrize("mode", ["full", "selective", True])
def test_activation_checkpointing_gives_the_same_loss_and_grads(mode):
    ids = torch.randint(0, 512, (2, 33), generator=torch.Generator().manual_seed(1))
    ref_loss, ref_grads = _loss_and_grads(_ac_model("off"), ids)
    loss, grads = _loss_and_grads(_ac_model(mode), ids)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    for name, g in ref_grads.items():  # recomputation repeats the same fp32 ops
        torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_selective_checkpointing_recomputes_every_second_matmul():
    """off recomputes nothing; full recomputes a block's forward matmuls (q_a, q_b, kv_a, kv_b,
    o, gate, up; not down_proj, whose output backward never reads: non-reentrant checkpoint
    stops early); selective keeps every odd one and recomputes q_b, kv_b and gate. So the
    policy is in effect, neither silently off nor full."""
    ids = torch.randint(0, 512, (2, 33), generator=torch.Generator().manual_seed(1))
    counts = {mode: _backward_matmuls(_ac_model(mode), ids) for mode in ("off", "full", "selective")}
    layers = 4  # ModelConfig.tiny
    assert counts["full"] - counts["off"] == layers * 7
    assert counts["selective"] - counts["off"] == layers * 3


def test_activation_checkpointing_setting_maps_booleans_and_rejects_others():
    from youtu.train.config import TrainConfig
    from youtu.train.parallel import checkpoint_mode

    assert TrainConfig(activation_checkpointing=True).activation_checkpointing == "full"
    assert TrainConfig(activation_checkpointing=False).activation_checkpointing == "off"
    assert TrainConfig(activation_checkpointing="selective").activation_checkpointing == "selective"
    assert checkpoint_mode(True) == "full" and checkpoint_mode("off") == "off"
    with pytest.raises(ValueError, match="activation_checkpointing"):
        TrainConfig(activation_checkpointing="some")


def test_shutdown_meets_at_a_barrier_on_a_clean_exit_only(monkeypatch):
    # A rank that destroys its gloo group while a peer still works with it can abort (CI saw
    # "terminate called without an active exception" on rank 1 of test_reshard); a failing
    # rank must not wait at a barrier its peers never reach.
    from youtu.train import parallel

    calls: list[str] = []
    monkeypatch.setattr(parallel.tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(parallel.tdist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(parallel.tdist, "destroy_process_group", lambda: calls.append("destroy"))
    dist = parallel.Dist(rank=0, world_size=2, owns_group=True)
    parallel.shutdown(dist)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    with pytest.raises(ValueError):
        try:
            raise ValueError("a rank failed")
        finally:
            parallel.shutdown(dist)
    assert calls == ["destroy"]
    calls.clear()
    parallel.shutdown(parallel.Dist(rank=0, world_size=2, owns_group=False))
    assert calls == []
