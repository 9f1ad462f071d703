"""Training metrics: one sink (JSONL always, TensorBoard when installed), MFU, the step log line.

    sink = MetricsSink(out_dir, enabled=dist.is_main)
    sink.log(120, {"train/loss": 3.214, "train/lr": 3e-4, "data/tokens/stem": 1.2e6})
    logger.info(step_line(step=120, total=2000, stage="stem", loss=3.214, lr=3e-4, gnorm=0.84,
                          tokens_per_s=1.27e6, mfu=0.412, eta_s=2160))
    # step 120/2000 | stage stem | loss 3.214 | lr 3.0e-4 | gnorm 0.84 | tok/s 1.27M | mfu 41.2% | eta 36m

Keys are namespaced: `train/...`, `data/tokens/<domain>`, `heldout/bpb/<domain>`, `sft/...`,
`eval/...`. `metrics.jsonl` holds one object per logged step: {"step": s, "time": unix, ...};
a resumed run appends, so a step can appear twice (the later line is the one that counts).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from youtu.fsutil import WriteFailed

logger = logging.getLogger(__name__)

# Dense bf16 tensor-core peaks (vendor datasheets, no sparsity). H100 and H200 share the
# GH100 compute die: 989 TFLOP/s SXM. CPUs get no MFU (no meaningful peak).
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
}


def peak_flops(device: torch.device | str) -> float | None:
    """Per-device dense bf16 peak FLOP/s for MFU, or None when unknown (CPU, unlisted GPUs)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    logger.warning("no peak FLOP/s known for %r: MFU is not reported (add it to "
                   "youtu.train.metrics.PEAK_BF16_FLOPS)", name)
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, world_size: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak of all devices."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * world_size)


def human_count(x: float) -> str:
    """1_270_000 -> '1.27M', 5300 -> '5.30k', 812 -> '812'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def human_duration(seconds: float) -> str:
    """45 -> '45s', 2160 -> '36m', 7500 -> '2h05m'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def step_line(*, step: int, total: int, stage: str, loss: float, lr: float, gnorm: float,
              tokens_per_s: float, mfu: float | None, eta_s: float) -> str:
    """The STYLE.md per-step log line (mfu left out where there is no peak, e.g. on CPU)."""
    parts = [f"step {step}/{total}", f"stage {stage}", f"loss {loss:.3f}", f"lr {lr:.1e}",
             f"gnorm {gnorm:.2f}", f"tok/s {human_count(tokens_per_s)}"]
    if mfu is not None:
        parts.append(f"mfu {100 * mfu:.1f}%")
    parts.append(f"eta {human_duration(eta_s)}")
    return " | ".join(parts)


class MetricsSink:
    """Writes namespaced scalars to `<folder>/metrics.jsonl` and, when available, TensorBoard.

    Args:
        folder: output folder (created).
        enabled: False on non-zero ranks: every call is then a no-op.
        tensorboard: also write TensorBoard events to `<folder>/tb` when the package is
            installed (logged once when it is not).
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(folder) / "metrics.jsonl"
        self._file = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed: metrics go to %s only", self.path)
            else:
                self._tb = SummaryWriter(str(Path(folder) / "tb"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record scalars at `step` (non-finite values are written as null in JSONL)."""
        if not self.enabled:
            return
        row: dict[str, float | int | None] = {"step": step, "time": round(time.time(), 3)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None
            if self._tb is not None:
                self._tb.add_scalar(key, value, step)
        line = json.dumps(row) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as e:  # disk full mid-run: one line naming the folder, not a traceback
            raise WriteFailed.of(self.path.parent, needed_bytes=len(line), error=e,
                                 what=f"metrics row ({self.path.name})") from e

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path, key: str) -> dict[int, float]:
    """{step: value} of one key from a metrics.jsonl, the last line per step winning (a resumed
    run rewrites the steps after its checkpoint)."""
    out: dict[int, float] = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if key in row and row[key] is not None:
            out[int(row["step"])] = float(row[key])
    return out
