"""Run a sequence of datatrove stages locally or on Slurm (`[data.executor]`).

    stages = [Stage("filter", [reader, ...], tasks=4), Stage("exact_find", [...], tasks=1)]
    ran = run_local(stages, workers=2, logging_dir="runs/tiny/data/.pipeline/logs")
    job_id = submit_slurm(stages, cfg.executor, workers=64, logging_dir="/shared/logs")

Local: each stage is a datatrove `LocalPipelineExecutor` over `<logging_dir>/<stage>/` (task
logs, stats, completion markers); its tasks run in one process pool shared by all stages
(started once, before the first stage's clock and logged apart: each stage's tasks start in
milliseconds, not a pool start per stage; the fork server preloads `WORKER_MODULES`), or in
this process with `workers = 0`. A task that raises, or a worker process that dies (killed, out
of memory), stops the run at once with `DataPipelineError` naming the stage, the task and its
log; tasks finished before it keep their completion markers, so a re-run does only the rest.
(datatrove's own pool, `multiprocess.Pool`, waits forever for the result of a killed worker.)

Slurm: each stage is a `SlurmPipelineExecutor` job array depending on the stage before;
`submit_slurm` submits them all (`sbatch`) and returns the last job's id. The scripts are in
`<logging_dir>/<stage>/launch_script.slurm`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import importlib
import io
import logging
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from datatrove.executor.local import LocalPipelineExecutor
from tqdm import tqdm

from youtu.data.config import ExecutorConfig
from youtu.errors import ConfigError

logger = logging.getLogger(__name__)


class DataPipelineError(ConfigError):
    """A task of the data pipeline failed; the message names it, its log and the fix."""


@dataclasses.dataclass
class Stage:
    """One datatrove stage: a pipeline of steps run as `tasks` tasks."""

    name: str
    pipeline: list
    tasks: int


def _cache_loguru_lib_dirs() -> None:
    """Compute loguru's library-folder list once per process, not at every `logger.add`.

    datatrove adds three loguru sinks per task (console, task log, the default sink back), and
    each `add` builds an exception formatter that expands every sysconfig install scheme:
    ~7 ms an add, 20 ms a task (1.2 s of a 7.7 s `youtu data prepare` of 3,200 documents in 59
    tasks, in-process). The list depends only on the install and `sys.path`, fixed in a worker.
    """
    from loguru import _better_exceptions as better

    formatter = getattr(better, "ExceptionFormatter", None)
    lib_dirs = getattr(formatter, "_get_lib_dirs", None)
    if lib_dirs is not None and not hasattr(lib_dirs, "cache_info"):
        formatter._get_lib_dirs = staticmethod(functools.cache(lib_dirs))


def _quiet_task(executor: LocalPipelineExecutor, rank: int) -> None:
    """Run one task with datatrove's console logging swallowed (the task's log file keeps it
    all): a failure then surfaces as one error line of ours, not a loguru traceback."""
    _cache_loguru_lib_dirs()
    with contextlib.redirect_stderr(io.StringIO()):
        # local_rank 1: datatrove logs only errors to the console of tasks other than 0.
        executor._run_for_rank(rank, local_rank=1)


def _dill_main() -> None:
    """Point dill at this worker's `__main__`. dill keeps the `__main__` of the moment it is
    imported; a script that imports datatrove (or this module) at its top has it imported while
    the worker re-runs the script, before the script becomes `__main__`, and a step the script
    defines (pickled by value) would then find none of the script's globals."""
    import dill._dill

    if hasattr(dill._dill, "_main_module"):
        dill._dill._main_module = sys.modules["__main__"]


def _worker_task(blob: bytes, rank: int) -> int:
    """Pool entry: run one task on a fresh copy of the stage's executor (its steps count stats
    per task, as datatrove's own executor deep-copies the pipeline per task)."""
    import dill

    _dill_main()
    _quiet_task(dill.loads(blob), rank)
    return rank


WORKER_MODULES = ("datatrove.pipeline.dedup.exact_dedup", "datatrove.pipeline.writers.jsonl",
                  "youtu.data.steps", "youtu.data.encode")
"""What the tasks unpickle, imported once by the fork server before it forks the workers: a
pool then starts in one import's time (~0.5 s), not the workers' imports at once competing for
the cores (on 2 cores: 16 workers 3.7 s -> 0.55 s, 8 workers 1.9 s -> 0.5 s). Not dill, nor
datatrove's executors (they import it): dill keeps the `__main__` of the moment it is imported,
and in the server that is not the worker's (`_dill_main` mends it where it happens anyway).
The workers import those two (~10 ms)."""


def forkserver_context():
    """The forkserver context, its server preloading WORKER_MODULES when this starts it (once
    per process: a server already running, e.g. a DataLoader's, keeps its list, and the
    workers import for themselves). For every pool whose tasks use the data pipeline."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", *WORKER_MODULES])
    return ctx


def _worker_ready(_: int) -> int:
    """Pool start: import what every task unpickles (already there when the fork server
    preloaded it), so a stage's time is its tasks' own."""
    for name in ("dill", "datatrove.executor.local", *WORKER_MODULES):
        importlib.import_module(name)
    return os.getpid()


class _Pool:
    """A process pool kept across stages; killed workers are noticed (BrokenProcessPool)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def get(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver, not fork: this process may hold tokenizer threads and locks. As with
            # a torch DataLoader, a script calling prepare() needs `if __name__ == "__main__":`.
            t0 = time.perf_counter()
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=forkserver_context())
            # The workers start (and import) here, all at once, not inside the first stage.
            try:
                # One call per worker: the pool forks a process for each call it cannot give
                # an idle one, so all `workers` exist (a fast one may answer several calls).
                list(self._pool.map(_worker_ready, range(self.workers)))
            except cf.process.BrokenProcessPool as e:
                self.close(kill=True)
                raise DataPipelineError(f"data prepare: the pool of {self.workers} worker "
                                        f"process(es) died while starting (out of memory?); "
                                        f"re-run with fewer data.workers") from e
            logger.info("data prepare: pool of %d worker(s) started in %.1fs", self.workers,
                        time.perf_counter() - t0)
        return self._pool

    def close(self, kill: bool = False) -> None:
        if self._pool is None:
            return
        if kill:
            # Do not wait for the other tasks of a failed run: stop their processes.
            for p in list(getattr(self._pool, "_processes", {}).values()):
                p.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


def _task_log(logging_dir: Path, rank: int) -> Path:
    return logging_dir / "logs" / f"task_{rank:05d}.log"


def _run_local(stage: Stage, logging_dir: Path, pool: _Pool | None) -> int:
    """Run a stage's unfinished tasks; returns how many ran."""
    import dill

    executor = LocalPipelineExecutor(stage.pipeline, tasks=stage.tasks, workers=1,
                                     logging_dir=str(logging_dir))
    todo = executor.get_incomplete_ranks()
    if not todo:
        logger.info("data prepare: stage %s: all %d task(s) already finished", stage.name,
                    stage.tasks)
        return 0
    executor.save_executor_as_json()
    pooled = pool is not None and not (len(todo) == 1 and stage.tasks == 1)
    if pooled:
        pool.get()  # started (once) before the stage's clock: its own line in the log
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"data {stage.name}", unit="task", disable=None,
               leave=False)
    if not pooled:
        blob = dill.dumps(executor) if len(todo) > 1 else None  # a fresh copy per task
        for rank in todo:
            try:
                _quiet_task(dill.loads(blob) if blob is not None else executor, rank)
            except (ConfigError, ValueError):
                raise  # bad input: its own message names the file and the fix
            except Exception as e:
                raise DataPipelineError(_failure(stage, rank, logging_dir, e)) from e
            finally:
                bar.update()
    else:
        blob = dill.dumps(executor)
        futures = {pool.get().submit(_worker_task, blob, rank): rank for rank in todo}
        try:
            for fut in cf.as_completed(futures):
                fut.result()
                bar.update()
        except cf.process.BrokenProcessPool as e:
            pool.close(kill=True)
            raise DataPipelineError(
                f"data prepare: a worker process of stage {stage.name!r} died (killed, or out "
                f"of memory) while running task(s) {sorted(r for f, r in futures.items() if not f.done() or f.exception())}; "
                f"task logs in {logging_dir / 'logs'}; re-run the command (finished tasks are "
                f"kept), with fewer data.workers if memory ran out") from e
        except (ConfigError, ValueError):
            pool.close(kill=True)
            raise
        except Exception as e:
            rank = next((r for f, r in futures.items() if f.done() and f.exception()), -1)
            pool.close(kill=True)
            raise DataPipelineError(_failure(stage, rank, logging_dir, e)) from e
    bar.close()
    logger.info("data prepare: stage %s: %d task(s) in %.1fs", stage.name, len(todo),
                time.perf_counter() - t0)
    return len(todo)


def _failure(stage: Stage, rank: int, logging_dir: Path, e: BaseException) -> str:
    return (f"data prepare: task {rank} of stage {stage.name!r} failed: "
            f"{type(e).__name__}: {e}; its log: {_task_log(logging_dir, rank)}; fix it and "
            f"re-run the command (finished tasks are kept)")


def _env_command(cfg: ExecutorConfig) -> str:
    if cfg.env_command:
        return cfg.env_command
    venv = os.environ.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix
                                             else "")
    return f"source {venv}/bin/activate" if venv else ""


def slurm_executors(stages: list[Stage], cfg: ExecutorConfig, workers: int,
                    logging_dir: str | Path) -> list:
    """One `SlurmPipelineExecutor` per stage, each depending on the one before."""
    from datatrove.executor.slurm import SlurmPipelineExecutor

    if not cfg.partition:
        raise ConfigError("data.executor.kind = 'slurm' needs data.executor.partition (the "
                          "Slurm partition to submit to), e.g. --data.executor.partition=cpu")
    executors: list = []
    for stage in stages:
        executors.append(SlurmPipelineExecutor(
            stage.pipeline, tasks=stage.tasks, time=cfg.time, partition=cfg.partition,
            cpus_per_task=cfg.cpus_per_task, mem_per_cpu_gb=cfg.mem_per_cpu_gb,
            workers=workers if workers > 0 else -1, job_name=f"youtu-data-{stage.name}",
            qos=cfg.qos, env_command=_env_command(cfg), sbatch_args=dict(cfg.sbatch_args),
            depends=executors[-1] if executors else None,
            logging_dir=str(Path(logging_dir) / stage.name), mail_type="NONE"))
    return executors


def submit_slurm(stages: list[Stage], cfg: ExecutorConfig, workers: int,
                 logging_dir: str | Path) -> str:
    """Submit `stages` as dependent Slurm job arrays (`sbatch`); returns the last job's id."""
    executors = slurm_executors(stages, cfg, workers, Path(logging_dir))
    executors[-1].run()  # launches its dependencies first
    return str(executors[-1].job_id)


def run_local(stages: list[Stage], workers: int, logging_dir: str | Path) -> dict[str, int]:
    """Run `stages` in order on this machine, `workers` tasks at a time (0: in this process).

    Returns:
        Tasks run per stage (finished ones from earlier runs are skipped).

    Raises:
        DataPipelineError: a task failed or a worker died.
    """
    pool = _Pool(workers) if workers > 0 else None
    try:
        return {stage.name: _run_local(stage, Path(logging_dir) / stage.name, pool)
                for stage in stages}
    finally:
        if pool is not None:
            pool.close()
