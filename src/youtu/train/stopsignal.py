"""Stopping a run cleanly: on SIGTERM, SIGINT or the preemption signal, finish the step, write a
checkpoint and exit with a message.

    kill -TERM <pid>        # Slurm / Kubernetes preemption: exit 143 after the checkpoint
    Ctrl-C                  # SIGINT: exit 130 after the checkpoint (a second Ctrl-C stops at once)
    sbatch --signal=USR1@120 ...   # the preemption signal (train.preempt_signal): checkpoint,
                                   # `scontrol requeue` the job, exit 128 + signum

The Trainer installs the handlers for the duration of `Trainer.run` and asks `should_stop` at the
top of every step; the handler only sets a flag, so a step (and a checkpoint being written) is
never cut in half. Under torchrun every rank must stop at the same step (the checkpoint is a
collective), so the flags are summed over ranks each step: one 8-byte all-reduce, next to the
step's own loss reduction. The requeue is what Lightning's SLURM environment does on SIGUSR1:
the job goes back to the queue and its rerun resumes from the checkpoint written here.

Under torchrun the elastic agent passes SIGTERM and SIGINT on to the workers, but not SIGUSR1,
which ends the agent itself; Slurm signals every process of the job step, so the workers still
checkpoint and rank 0 requeues the job. (tests/train/test_parallel.py signals one worker
directly: the ranks agree and stop together.)
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import torch

from youtu.train.parallel import Dist

logger = logging.getLogger(__name__)


class Stopped(KeyboardInterrupt):
    """The run stopped on a signal after writing a checkpoint. A KeyboardInterrupt, so nothing
    on the way up mistakes it for an error; the CLI prints it and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int, checkpoint: Path | None):
        super().__init__(message)
        self.exit_code = exit_code
        self.checkpoint = checkpoint


def signal_number(name: str) -> int:
    """'SIGUSR1' / 'USR1' -> its number. Raises ValueError naming the valid ones."""
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    try:
        return int(signal.Signals[key])
    except KeyError:
        raise ValueError(f"preempt_signal {name!r} is not a signal name (e.g. 'SIGUSR1', "
                         "'SIGUSR2'; '' = none)") from None


class StopSignals:
    """SIGTERM, SIGINT and an optional preemption signal turned into a stop request.

    Args:
        preempt_signal: name of the signal meaning "preempted: checkpoint, requeue, exit";
            '' = none.
    """

    def __init__(self, preempt_signal: str = "SIGUSR1"):
        self.preempt = signal_number(preempt_signal) if preempt_signal else None
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _signals(self) -> list[int]:
        sigs = [signal.SIGTERM, signal.SIGINT]
        return sigs + ([self.preempt] if self.preempt not in (None, *sigs) else [])

    def install(self) -> StopSignals:
        """Take over the signals (main thread only: elsewhere Python cannot, and it is a no-op)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return self
        self.received = None
        for sig in self._signals():
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Give the signals back to whoever had them."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self.received = self.received or signum
        logger.warning("%s received: finishing this step, then writing a checkpoint and "
                       "stopping%s", signal.Signals(signum).name,
                       " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else "")

    def should_stop(self, dist: Dist) -> bool:
        """True on every rank when any rank received a stop signal (collective under torchrun)."""
        if not dist.distributed:
            return self.received is not None
        flag = torch.tensor([0.0 if self.received is None else 1.0], device=dist.device)
        if dist.all_reduce_sum(flag).item() == 0:
            return False
        # Rare: agree on which signal (the exit code) too.
        self.received = max(s for s in dist.all_gather_object(self.received) if s is not None)
        return True

    def stopped(self, checkpoint: Path | None, step: int, dist: Dist) -> Stopped:
        """The exception that ends the run after `checkpoint` was written at `step`; requeues a
        Slurm job first when the preemption signal stopped it."""
        signum = self.received or signal.SIGTERM
        name = signal.Signals(signum).name
        requeued = ""
        if signum == self.preempt and dist.is_main:
            requeued = requeue_slurm_job()
        return Stopped(f"stopped by {name} after step {step}; checkpoint {checkpoint}{requeued}; "
                       "run the same command again to resume from it", 128 + signum, checkpoint)


def requeue_slurm_job() -> str:
    """`scontrol requeue` this Slurm job (an array task by its array id); '' when not under
    Slurm. Returns a note for the stop message."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        logger.warning("not requeueing Slurm job %s: scontrol is not on PATH", job)
        return ""
    done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True)
    if done.returncode != 0:
        logger.warning("scontrol requeue %s failed: %s", job, done.stderr.strip())
        return ""
    logger.info("requeued Slurm job %s", job)
    return f" (Slurm job {job} requeued)"
