"""`youtu synth`'s worker pool fails loudly: a worker whose initializer raises, a worker killed
mid-shard (what the OOM killer does) and a token counter that cannot load each stop the command
with one error line instead of hanging (multiprocessing.Pool respawned failing workers forever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import youtu.agentic.synthesize as synth
from youtu.agentic.config import SynthConfig
from youtu.errors import ConfigError, RunError

MIX = {"research": 4, "math": 4}


def _boom(cfg):
    raise RuntimeError("planted initializer failure")


def test_initializer_failure_raises_instead_of_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "make_envs", _boom)  # forked workers inherit the patch
    with pytest.raises(RunError, match="failed to start .RuntimeError: planted"):
        synth.synthesize(SynthConfig(mix=MIX, shard_size=2, workers=2), tmp_path / "out")


def test_a_killed_worker_raises_and_finished_shards_resume(tmp_path, monkeypatch):
    real = synth.run_scripted_job

    def dies_on_math(job):
        if job[0] == "math":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(job)

    monkeypatch.setattr(synth, "run_scripted_job", dies_on_math)
    cfg = SynthConfig(mix=MIX, shard_size=2, workers=2)
    with pytest.raises(RunError, match="worker died .* run again to resume"):
        synth.synthesize(cfg, tmp_path / "out")
    monkeypatch.setattr(synth, "run_scripted_job", real)
    stats = synth.synthesize(cfg, tmp_path / "out")
    assert stats["kept"] > 0 and set(stats["domains"]) == set(MIX)


def test_unknown_token_counter_is_a_config_error(tmp_path):
    cfg = SynthConfig(mix=MIX, shard_size=2, workers=2, token_counter="no_such_encoding")
    with pytest.raises(ConfigError, match="synth.token_counter"):
        synth.synthesize(cfg, tmp_path / "out")


def test_cli_prints_one_error_line_and_exits_nonzero(tmp_path):
    """Through the real console entry point, in a subprocess with a timeout: a hang fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOUTU_TRACEBACK": ""}
    code = ("import youtu.agentic.synthesize as s, youtu.cli as c, sys\n"
            "s.make_envs = lambda cfg: (_ for _ in ()).throw(MemoryError('planted'))\n"
            "sys.exit(c.main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "synth", f"--out_dir={tmp_path}",
                           "--synth.workers=2", "--synth.mix={research = 4, math = 4}",
                           "--synth.shard_size=2"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("youtu: error:")]
    assert len(errors) == 1 and "failed to start (MemoryError: planted)" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
