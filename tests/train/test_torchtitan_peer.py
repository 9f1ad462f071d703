"""The torchtitan peer of bench/train_throughput.py computes our model: same weights and batch
give the same first-step loss (CPU, fp32, eager, tiny preset).

Skipped unless torchtitan is importable (it is a peer, not a dependency):
    pip install --no-deps --target /tmp/tt22 torchtitan==0.2.2 tyro docstring-parser typeguard \
        shtab torchdata triton
    PYTHONPATH=src:/tmp/tt22 python -m pytest -q -m slow tests/train/test_torchtitan_peer.py

The bench runs in a subprocess: the peer initialises a process group and importing torchtitan
patches FakeTensorMode and dynamo flags, none of which may leak into the rest of the suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torchtitan") is None,
                    reason="torchtitan not installed (a bench peer, not a dependency)")
def test_first_loss_matches_ours(tmp_path: Path) -> None:
    out = tmp_path / "peer.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench"),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--peer", "torchtitan",
         "--device", "cpu", "--seq", "128", "--batch", "2", "--steps", "1", "--warmup", "1",
         "--profile", "3", "--json-out", str(out)],
        check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "peer_error" not in result, result["peer_error"]
    ours, titan = result["results"]
    assert titan["name"].startswith("torchtitan ")
    # Measured at this shape: 9.1503704 vs 9.1503716 (1.2e-7 relative, fp32 summation order);
    # torchtitan's RoPE theta doubled gives 2.5e-4 (the test fails); at 4 x 256 a swapped
    # gate/up gave 3.5e-3.
    rel = abs(titan["first_loss"] - ours["first_loss"]) / ours["first_loss"]
    assert rel < 1e-5, (ours["first_loss"], titan["first_loss"])
    # --profile: one more step of each under the profiler, matrix products among its kinds
    for r in (ours, titan):
        assert r["profile"]["total_ms"] > 0 and r["profile"]["kinds_ms"]["gemm"] > 0, r["profile"]
        assert len(r["profile"]["top"]) == 3
