"""Runs that never lose or mix work (issue 18): the run-folder lock, resume from the newest
checkpoint that loads, checkpoint-and-stop on signals, a full disk, settings checked before the
first step, durable renames, data checks that honour their settings."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from youtu.cli import main as cli_main
from youtu.config import load_config
from youtu.errors import ConfigError
from youtu.train import checkpoint as ckpt
from youtu.train.metrics import read_metrics as _read_metrics
from youtu.train.parallel import Dist
from youtu.train.trainer import Trainer

from .train_helpers import run_train

def read_metrics(path: Path, key: str) -> dict[int, float]:
    return _read_metrics(path, key) if path.is_file() else {}


LOCK_FILE = ".lock"
# The new modules are imported inside the tests, so that this file also runs (and fails test by
# test) against the code before issue 18.

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _youtu_train(tiny_toml, out, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "youtu", "train", str(tiny_toml),
                             f"--out_dir={out}", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(predicate, proc, what, timeout_s=120):
    deadline = time.time() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what} (rc {proc.returncode}): "
                                 f"{proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, f"no {what} within {timeout_s}s"
        time.sleep(0.005)


def _lock_holder(folder: Path) -> dict | None:
    try:
        return json.loads((folder / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


# ---- the lock --------------------------------------------------------------------------------


def test_a_second_youtu_train_in_the_same_folder_refuses_and_a_dead_holders_lock_is_taken_over(
        tiny_toml, tmp_path, caplog):
    out = tmp_path / "runs"
    folder = out / "t" / "train"
    first = _youtu_train(tiny_toml, out)
    try:
        _wait_for(lambda: (_lock_holder(folder) or {}).get("pid") == first.pid, first,
                  "the first run took the lock")
        os.kill(first.pid, signal.SIGSTOP)  # frozen mid-run, lock held: no race with its end
        second = _youtu_train(tiny_toml, out, "--train.lr=1e-3")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err[-3000:]
        assert err.count("\n") == 1 and f"is in use by another run: pid {first.pid}" in err
        assert "-m youtu train" in err  # the holder's command
        assert not read_metrics(folder / "metrics.jsonl", "train/loss") or \
            max(read_metrics(folder / "metrics.jsonl", "train/loss")) < 16
    finally:
        first.kill()
        first.wait()
    from youtu.train import runfolder

    # kill -9 left the file naming a dead holder; the kernel dropped the flock itself
    assert _lock_holder(folder)["pid"] == first.pid
    with caplog.at_level(logging.WARNING, logger="youtu.train.runfolder"):
        runfolder.lock(folder, Dist())
    try:
        assert f"pid {first.pid}" in caplog.text and "is not running any more" in caplog.text
        assert _lock_holder(folder)["pid"] == os.getpid()
        runfolder.lock(folder, Dist())  # the same process nests
        runfolder.unlock(folder, Dist())
        assert _lock_holder(folder)["pid"] == os.getpid()
    finally:
        runfolder.unlock(folder, Dist())
    assert _lock_holder(folder) is None  # released cleanly: an empty file


# ---- signals -----------------------------------------------------------------------------------


def test_sigterm_mid_run_checkpoints_exits_143_and_resumes_exactly(
        reference_run, tiny_toml, tmp_path, data_dir, tokenizer_dir):
    ref_dir, ref_losses = reference_run
    out = tmp_path / "runs"
    folder = out / "t" / "train"
    proc = _youtu_train(tiny_toml, out)
    _wait_for(lambda: len(read_metrics(folder / "metrics.jsonl", "train/loss")) >= 2, proc,
              "step 2")
    os.kill(proc.pid, signal.SIGSTOP)  # hold it mid-run so that the signal lands before the end
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    stopped_at = max(read_metrics(folder / "metrics.jsonl", "train/loss"))
    assert stopped_at < 16
    assert f"youtu: stopped by SIGTERM after step {stopped_at}; checkpoint " in err
    assert read_marker_step(ckpt.latest_checkpoint(folder)) == stopped_at  # nothing lost

    cfg = load_config(tiny_toml, [f"--out_dir={out}"])
    final = run_train(cfg, data_dir, tokenizer_dir, folder)
    assert read_metrics(folder / "metrics.jsonl", "train/loss") == ref_losses  # bit-equal
    for k, v in ckpt.load_weights(ref_dir / "stage_agent").items():
        assert torch.equal(ckpt.load_weights(final)[k], v), k


def read_marker_step(path: Path) -> int:
    return ckpt.read_marker(path)["step"]


def _signal_after_step(monkeypatch, n: int, sig: int) -> None:
    """Step `n` sends `sig` to this process as it ends (before the next step, as a real signal
    arriving mid-step would be seen)."""
    real = Trainer.train_step

    def train_step(self, *args, **kw):
        stats = real(self, *args, **kw)
        if self.step == n:
            os.kill(os.getpid(), sig)
        return stats

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_sigint_finishes_the_step_checkpoints_and_gives_the_signal_back(
        make_cfg, data_dir, tokenizer_dir, monkeypatch):
    cfg = make_cfg("--train.checkpoint_every=0")
    out = cfg.run_dir / "train"
    before = signal.getsignal(signal.SIGINT)
    _signal_after_step(monkeypatch, 3, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:  # stopsignal.Stopped
        run_train(cfg, data_dir, tokenizer_dir, out)
    assert stop.value.exit_code == 130 and "stopped by SIGINT after step 3" in str(stop.value)
    assert stop.value.checkpoint == out / ckpt.step_dirname(3)
    assert ckpt.check_loadable(stop.value.checkpoint) is None
    assert sorted(read_metrics(out / "metrics.jsonl", "train/loss")) == [1, 2, 3]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_preemption_signal_checkpoints_and_requeues_the_slurm_job(
        make_cfg, data_dir, tokenizer_dir, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    cfg = make_cfg("--train.preempt_signal=SIGUSR2")
    _signal_after_step(monkeypatch, 6, signal.SIGUSR2)
    with pytest.raises(KeyboardInterrupt) as stop:  # stopsignal.Stopped
        run_train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")
    assert stop.value.exit_code == 128 + signal.SIGUSR2
    assert "(Slurm job 4242 requeued)" in str(stop.value)
    assert calls.read_text() == "requeue 4242\n"
    assert read_marker_step(stop.value.checkpoint) == 6
    with pytest.raises(ValueError, match="preempt_signal 'SIGNOPE' is not a signal name"):
        make_cfg("--train.preempt_signal=SIGNOPE")


# ---- resume ------------------------------------------------------------------------------------


def _damage(folder: Path, how: str) -> None:
    if how == "truncated trainer_state.pt":
        state = folder / ckpt.STATE_FILE
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif how == "truncated model.safetensors":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-100])
    elif how == "garbage config.json":
        (folder / "config.json").write_text("{not json")
    elif how == "no trainer_state.pt":
        (folder / ckpt.STATE_FILE).unlink()
    elif how == "unreadable checkpoint.json":
        (folder / ckpt.MARKER).write_text('{"step": 1')


DAMAGES = ["truncated trainer_state.pt", "truncated model.safetensors", "garbage config.json",
           "no trainer_state.pt", "unreadable checkpoint.json"]


@pytest.mark.parametrize("how", DAMAGES)
def test_check_loadable_names_each_kind_of_damage(reference_run, tmp_path, how):
    ref_dir, _ = reference_run
    folder = tmp_path / "c"
    shutil.copytree(ref_dir / "stage_stem", folder)
    assert ckpt.check_loadable(folder) is None
    _damage(folder, how)
    reason = ckpt.check_loadable(folder)
    expected = {"truncated trainer_state.pt": "trainer_state.pt is truncated or corrupt",
                "truncated model.safetensors": "model.safetensors is truncated or corrupt",
                "garbage config.json": "config.json is unreadable",
                "no trainer_state.pt": "trainer_state.pt is missing",
                "unreadable checkpoint.json": "checkpoint.json is missing or unreadable"}[how]
    assert reason is not None and reason.startswith(expected), reason


def _folder_with(ref_dir: Path, cfg, *names: str) -> Path:
    """The run's checkpoint folder holding copies of the reference run's checkpoints `names`
    (copied in that order)."""
    out = cfg.run_dir / "train"
    out.mkdir(parents=True)
    for name in names:
        shutil.copytree(ref_dir / name, out / name)
    return out


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before_and_says_so(
        reference_run, make_cfg, data_dir, tokenizer_dir, caplog):
    ref_dir, ref_losses = reference_run
    cfg = make_cfg()
    out = _folder_with(ref_dir, cfg, "stage_stem", "stage_general")  # steps 8 and 12
    _damage(out / "stage_general", "truncated trainer_state.pt")
    with caplog.at_level(logging.WARNING, logger="youtu.train.runfolder"):
        final = run_train(cfg, data_dir, tokenizer_dir, out)
    assert "skipping checkpoint" in caplog.text and "stage_general: trainer_state.pt is " \
        "truncated" in caplog.text
    assert f"resuming from {out / 'stage_stem'}" in caplog.text
    assert read_metrics(out / "metrics.jsonl", "train/loss") == {
        k: v for k, v in ref_losses.items() if k > 8}
    assert final == out / "stage_agent" and ckpt.check_loadable(out / "stage_general") is None


@pytest.mark.parametrize("how", ["no trainer_state.pt", "unreadable checkpoint.json"])
def test_no_silent_restart_when_the_only_checkpoint_does_not_load(
        reference_run, make_cfg, data_dir, tokenizer_dir, how):
    ref_dir, _ = reference_run
    cfg = make_cfg()
    out = _folder_with(ref_dir, cfg, "stage_stem")
    _damage(out / "stage_stem", how)
    weights = (out / "stage_stem" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="holds checkpoints but none can be resumed from: "
                                          "stage_stem .*--train.init=<folder>"):
        run_train(cfg, data_dir, tokenizer_dir, out)
    assert (out / "stage_stem" / "model.safetensors").read_bytes() == weights  # left alone
    assert not read_metrics(out / "metrics.jsonl", "train/loss")  # no step ran


def test_resume_false_in_a_used_folder_is_refused_and_keeps_the_old_run(
        reference_run, make_cfg, data_dir, tokenizer_dir):
    ref_dir, _ = reference_run
    cfg = make_cfg("--train.resume=false")
    out = _folder_with(ref_dir, cfg, "stage_stem")
    with pytest.raises(ConfigError, match="train.resume=false, but .* holds checkpoints of an "
                                          "earlier run \\(stage_stem\\)"):
        run_train(cfg, data_dir, tokenizer_dir, out)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["stage_stem"]
    assert ckpt.check_loadable(out / "stage_stem") is None


# ---- write errors ------------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_disk_gives_one_line_removes_the_temp_folder_and_keeps_the_last_checkpoint(
        reference_run, tiny_toml, tmp_path, capsys, monkeypatch):
    from youtu import fsutil

    ref_dir, _ = reference_run
    size = fsutil.tree_bytes(ref_dir / "stage_commonsense")
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, int(size * 1.5) // 4096 * 4096)  # the first checkpoint fits
    if not mounted:  # not root: a full disk injected where the checkpoint writes its weights
        import youtu.model.hf as hf

        real = hf.save_file
        calls = {"n": 0}

        def save_file(*args, **kw):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kw)

        monkeypatch.setattr(hf, "save_file", save_file)
    try:
        rc = cli_main(["train", str(tiny_toml), f"--out_dir={disk}"])
        err = capsys.readouterr().err.strip().splitlines()
        folder = disk / "t" / "train"
        assert rc == 1
        line = [x for x in err if x.startswith("youtu:")]
        assert len(line) == 1 and line == err[-1:], err[-5:]
        assert f"no space left in {folder} for the checkpoint stage_stem: it needs about " \
               "0." in line[0] and " MB are free" in line[0]  # ~0.4 MB: the last one's size
        assert "free space there or point the output at a larger disk (removed the partial" \
            in line[0]
        assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
        assert ckpt.check_loadable(folder / "stage_commonsense") is None
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=True)


def test_checkpoint_renames_are_fsynced_with_their_folder(reference_run, tmp_path, monkeypatch):
    from youtu import fsutil

    synced = []
    monkeypatch.setattr(fsutil, "fsync_dir", lambda p: synced.append(Path(p)))
    fsutil.atomic_write(tmp_path / "a.json", "{}")
    assert synced == [tmp_path] and (tmp_path / "a.json").read_text() == "{}"
    synced.clear()
    ref_dir, _ = reference_run
    src = tmp_path / ".tmp-x"
    shutil.copytree(ref_dir / "stage_stem", src)
    ckpt._replace_dir(src, tmp_path / "x")
    assert tmp_path in synced and (tmp_path / "x" / ckpt.MARKER).is_file()


# ---- settings before the first step; data checks ------------------------------------------------


def test_a_later_stages_seq_len_is_refused_before_the_first_step(make_cfg, data_dir,
                                                                 tokenizer_dir):
    cfg = make_cfg("--model.max_position_embeddings=48")  # stages 3-4 have seq_len 64
    out = cfg.run_dir / "train"
    with pytest.raises(ConfigError, match="stage 'general': seq_len 64 exceeds the model's "
                                          "max_position_embeddings 48"):
        run_train(cfg, data_dir, tokenizer_dir, out)
    assert not read_metrics(out / "metrics.jsonl", "train/loss")  # not 8 steps first
    assert ckpt.latest_checkpoint(out) is None


def test_stages_after_stop_after_are_not_checked(make_cfg, data_dir, tokenizer_dir):
    """A run that stops before stage 'general' (step 8) may use a model that stage could not
    run on (the torchrun reshard tests stop early on process counts a later stage refuses)."""
    cfg = make_cfg("--model.max_position_embeddings=48", "--train.stop_after=8",
                   "--train.checkpoint_every=0")
    out = cfg.run_dir / "train"
    run_train(cfg, data_dir, tokenizer_dir, out)
    assert max(read_metrics(out / "metrics.jsonl", "train/loss")) == 8


def _copy_data(data_dir: Path, dst: Path) -> Path:
    shutil.copytree(data_dir, dst, ignore=shutil.ignore_patterns("heldout"))
    return dst


def test_verify_checksums_false_is_honoured_by_train(make_cfg, data_dir, tokenizer_dir, tmp_path):
    data = _copy_data(data_dir, tmp_path / "data")
    shard = data / "code" / "shard_00000.bin"
    raw = bytearray(shard.read_bytes())
    raw[4] ^= 1  # same size: only the checksum can tell
    shard.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="fails its sha256 checksum"):
        run_train(make_cfg("--train.stop_after=1"), data, tokenizer_dir, tmp_path / "a")
    cfg = make_cfg("--train.stop_after=1", "--data.verify_checksums=false")
    assert run_train(cfg, data, tokenizer_dir, tmp_path / "b") == tmp_path / "b" / "step_00000001"


def test_an_edited_manifest_is_named_not_the_shard(data_dir, tmp_path):
    from youtu.data.shards import ShardSet

    data = _copy_data(data_dir, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["domains"]["code"]["shards"][0]["tokens"] += 10
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=f"{data / 'manifest.json'} disagrees with "
                                          f".*code/shard_00000.json.*tokens differ"):
        ShardSet.open(data, None)


@pytest.mark.gpu
def test_a_signal_stop_on_cuda_checkpoints_and_resumes(make_cfg, data_dir, tokenizer_dir,
                                                      monkeypatch, tmp_path):
    """bf16 autocast on CUDA: the stop checkpoint holds the CUDA RNG and fp32 master weights,
    and the resumed losses follow an uninterrupted CUDA run (1e-3: bf16 kernels may reduce in
    another order between processes)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    whole = make_cfg("--device=cuda")
    run_train(whole, data_dir, tokenizer_dir, tmp_path / "whole")
    ref = read_metrics(tmp_path / "whole" / "metrics.jsonl", "train/loss")
    out = tmp_path / "stopped"
    with monkeypatch.context() as m:
        _signal_after_step(m, 5, signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt) as stop:
            run_train(whole, data_dir, tokenizer_dir, out)
    assert stop.value.exit_code == 143 and read_marker_step(stop.value.checkpoint) == 5
    run_train(whole, data_dir, tokenizer_dir, out)
    losses = read_metrics(out / "metrics.jsonl", "train/loss")
    assert sorted(losses) == sorted(ref)
    for step in ref:
        assert losses[step] == pytest.approx(ref[step], rel=1e-3), step
