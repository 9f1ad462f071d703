"""The data pipeline's executors: failures stop the run with one error (never a hang), finished
tasks are not redone, kill -9 + re-run == an uninterrupted run, and the Slurm job scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from youtu.data.config import (DataConfig, DedupConfig, EmbeddedConfig, ExecutorConfig,
                               QualityConfig, SourceConfig)
from youtu.data.engine import DataPipelineError, Stage, run_local
from youtu.data.prepare import prepare

from .data_helpers import prose

ROOT = Path(__file__).resolve().parents[2]


def _boom(data, rank: int, world_size: int):
    if rank == 1:
        raise RuntimeError("disk on fire")
    return data


def _die(data, rank: int, world_size: int):
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
    time.sleep(0.2)
    return data


def _pass(data, rank: int, world_size: int):
    return data


def _fail_once(data, rank: int, world_size: int):
    flag = Path(os.environ["YOUTU_TEST_FLAG"])
    if rank == 2 and not flag.exists():
        flag.touch()
        raise RuntimeError("transient")
    return data


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_task_stops_the_run_naming_the_task_and_its_log(tmp_path, workers):
    with pytest.raises(DataPipelineError) as e:
        run_local([Stage("boom", [_boom], 3)], workers, tmp_path)
    msg = str(e.value)
    assert "task 1 of stage 'boom' failed: RuntimeError: disk on fire" in msg and "\n" not in msg
    assert (tmp_path / "boom" / "logs" / "task_00001.log").is_file()


def _pid(folder: str, data, rank: int, world_size: int):
    Path(folder, f"{rank}.{os.getpid()}").touch()
    return data


def test_the_pool_starts_once_before_the_first_stage_and_logs_its_start(tmp_path, caplog):
    """The pool's start is its own log line (not in the first stage's time); both stages'
    tasks run in the same two worker processes."""
    import functools
    import logging

    flags = tmp_path / "flags"
    flags.mkdir()
    step = functools.partial(_pid, str(flags))  # not the environment: the fork server's is older
    with caplog.at_level(logging.INFO, logger="youtu.data.engine"):
        ran = run_local([Stage("a", [step], 4), Stage("b", [step], 4)], 2, tmp_path / "logs")
    assert ran == {"a": 4, "b": 4}
    lines = [r.getMessage() for r in caplog.records]
    starts = [i for i, m in enumerate(lines) if "pool of 2 worker(s) started in" in m]
    stage_a = next(i for i, m in enumerate(lines) if "stage a: 4 task(s) in" in m)
    assert len(starts) == 1 and starts[0] < stage_a
    names = [p.name.split(".") for p in flags.iterdir()]
    assert {rank for rank, _ in names} == {"0", "1", "2", "3"}
    assert len({pid for _, pid in names}) <= 2 and str(os.getpid()) not in {p for _, p in names}


_PROBE = """
import os
IMPORTED_IN = os.getpid()


def where(_):
    return IMPORTED_IN, os.getpid()
"""


def test_the_fork_server_preloads_what_the_tasks_import_and_the_cli_imports_no_torch(tmp_path):
    """Workers fork from a server that imported WORKER_MODULES once (a module the tasks use was
    imported in another process than the worker's); and the CLI's own import, which every
    worker of `youtu data prepare` repeats (its script is the pool's __main__), is light."""
    (tmp_path / "preload_probe.py").write_text(_PROBE)
    script = textwrap.dedent("""
        from youtu.data import engine

        if __name__ == "__main__":
            engine.WORKER_MODULES = (*engine.WORKER_MODULES, "preload_probe")
            pool = engine._Pool(2)
            import preload_probe
            print(sorted(set(pool.get().map(preload_probe.where, range(4)))))
            pool.close()
    """)
    (tmp_path / "main.py").write_text(script)
    # On the path by PYTHONPATH: the fork server of Python 3.11 ignores the parent's sys.path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    out = subprocess.run([sys.executable, str(tmp_path / "main.py")], capture_output=True,
                         text=True, env=env, timeout=120, check=True).stdout
    pairs = eval(out.strip().splitlines()[-1])
    assert pairs and all(imported != worker for imported, worker in pairs), pairs
    cli = subprocess.run([sys.executable, "-c", "import sys, youtu.cli; "
                          "print(sorted({'torch', 'numpy'} & set(sys.modules)))"],
                         capture_output=True, text=True, env=env, timeout=60, check=True)
    assert cli.stdout.strip() == "[]"


_MAIN_STEP = """
from youtu.data.engine import Stage, run_local


def answer():
    return 41


class Step:  # defined in __main__: dill pickles it by value, its globals are this module's
    def __call__(self, data, rank=0, world_size=1):
        assert answer() == 41
        return data


if __name__ == "__main__":
    import sys
    print(run_local([Stage("main", [Step()], 2)], 2, sys.argv[1]))
"""


def test_a_step_defined_in_the_scripts_main_finds_its_globals_in_the_workers(tmp_path):
    """dill keeps the `__main__` of its import, which in a worker (the script importing datatrove
    while it is re-run there, or a fork server that preloaded dill) is not the script: a
    by-value step from the script's `__main__` missed `answer`. It failed before this fix, with
    or without the preloading fork server."""
    (tmp_path / "main.py").write_text(_MAIN_STEP)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(tmp_path / "main.py"), str(tmp_path / "logs")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("{'main': 2}")


def test_a_task_does_not_expand_the_install_schemes_for_each_log_sink(tmp_path, monkeypatch):
    """loguru's `logger.add` (three per datatrove task) listed the library folders anew each
    time, from every sysconfig scheme: ~20 ms a task. Now once per process."""
    import sysconfig

    calls = []
    scheme_names = sysconfig.get_scheme_names
    monkeypatch.setattr(sysconfig, "get_scheme_names", lambda: calls.append(1) or scheme_names())
    assert run_local([Stage("logs", [_pass], 4)], 0, tmp_path / "logs") == {"logs": 4}
    assert len(calls) <= 1, f"{len(calls)} scheme listings for 4 tasks"


def test_a_killed_worker_stops_the_run_instead_of_hanging(tmp_path):
    t = time.perf_counter()
    with pytest.raises(DataPipelineError, match="worker process of stage 'die' died"):
        run_local([Stage("die", [_die], 4)], 2, tmp_path)
    assert time.perf_counter() - t < 60  # datatrove's own multiprocess.Pool would wait forever


def test_finished_tasks_are_not_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("YOUTU_TEST_FLAG", str(tmp_path / "flag"))
    with pytest.raises(DataPipelineError, match="task 2 of stage 'once'"):
        run_local([Stage("once", [_fail_once], 4)], 0, tmp_path / "logs")
    done = sorted(p.name for p in (tmp_path / "logs" / "once" / "completions").iterdir())
    assert done == ["00000", "00001"]
    assert run_local([Stage("once", [_fail_once], 4)], 0, tmp_path / "logs") == {"once": 2}
    assert run_local([Stage("once", [_fail_once], 4)], 0, tmp_path / "logs") == {"once": 0}


def _source_cfg(tmp_path: Path, **kw) -> DataConfig:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for k in range(3):  # three files: three read units, one per task
        texts = [prose(i) for i in range(20 * k, 20 * k + 20)] + [prose(20 * k)]  # 1 exact dup
        (src / f"{k}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    base = dict(embedded=EmbeddedConfig(enabled=False), workers=0, shard_chars=4000,
                heldout_fraction=0.1, executor=ExecutorConfig(tasks=3),
                quality=QualityConfig(enabled=False), dedup=DedupConfig(near=True),
                sources=[SourceConfig(path=str(src), domain="commonsense", name="town")])
    return DataConfig(**{**base, **kw})


def _shard_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("shard_*"))
            if ".pipeline" not in p.parts}


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path, tokenizer):
    cfg = _source_cfg(tmp_path)
    tokenizer.save(tmp_path / "tok")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.data.test_engine import _source_cfg
        from youtu.data import steps
        from youtu.data.prepare import prepare
        from youtu.tokenizer import Tokenizer
        run = steps.Tally.run
        def killing(self, data, rank=0, world_size=1):
            if self.label == "exact" and rank == 1:  # stage 3 of 6, after its task 0
                os.kill(os.getpid(), signal.SIGKILL)
            return run(self, data, rank, world_size)
        steps.Tally.run = killing
        prepare(_source_cfg(__import__("pathlib").Path({str(tmp_path)!r})),
                Tokenizer.load({str(tmp_path / "tok")!r}), {str(tmp_path / "killed")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "killed" / "manifest.json").exists()
    resumed = prepare(cfg, tokenizer, tmp_path / "killed")
    # Stages 1-2 and task 0 of stage 3 had finished: not redone.
    assert resumed["build"]["tasks_run"] == {"filter": 0, "exact_find": 0, "exact": 2,
                                             "minhash_buckets": 9, "minhash_cluster": 1,
                                             "shards": 3}
    clean = prepare(cfg, tokenizer, tmp_path / "clean")
    assert clean["build"]["tasks_run"]["filter"] == 3
    a, b = _shard_bytes(tmp_path / "killed"), _shard_bytes(tmp_path / "clean")
    assert a == b and len(a) >= 8
    assert resumed["domains"] == clean["domains"] and resumed["filters"] == clean["filters"]
    assert clean["filters"]["dedup"]["reasons"]["exact"]["docs"] == 3


def test_cli_task_failure_is_one_error_line(tmp_path, tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n')
    (tmp_path / "run.toml").write_text(textwrap.dedent(f"""
        [data]
        workers = 2
        [data.embedded]
        enabled = false
        [[data.sources]]
        path = {str(bad)!r}
    """))
    tokenizer.save(tmp_path / "tok")
    proc = subprocess.run(
        [sys.executable, "-m", "youtu", "data", "prepare", str(tmp_path / "run.toml"),
         f"--out_dir={tmp_path}", "--name=r", f"--tokenizer.path={tmp_path / 'tok'}",
         f"--synth.out={tmp_path / 'nosynth'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("youtu: error:"), proc.stderr[-3000:]
    assert "bad.jsonl:2: not valid JSON" in errors[0] and "Traceback" not in proc.stderr


def test_slurm_job_scripts_and_a_simulated_slurm_run(tmp_path, tokenizer, monkeypatch):
    """Submission with `sbatch` faked; then every array task is run as Slurm would run it
    (`SLURM_ARRAY_TASK_ID` set, the pickled executor loaded): the shards equal a local run."""
    import dill
    from datatrove.executor import slurm

    launched: list[tuple[str, tuple]] = []

    def fake_sbatch(contents, job_id_retriever, *args):
        launched.append((contents, args))
        return str(100 + len(launched))

    monkeypatch.setattr(slurm, "launch_slurm_job", fake_sbatch)
    ex = ExecutorConfig(kind="slurm", tasks=3, partition="cpu", time="01:00:00",
                        env_command="source /opt/venv/bin/activate",
                        sbatch_args={"account": "proj"})
    cfg = _source_cfg(tmp_path, executor=ex, workers=8)
    out = prepare(cfg, tokenizer, tmp_path / "slurm")
    assert set(out) == {"slurm_job_id", "logging_dir"}
    logs = Path(out["logging_dir"])
    stages = ["filter", "exact_find", "exact", "minhash_buckets", "minhash_cluster", "shards",
              "finalize"]
    jobs = [(c, a) for c, a in launched if "launch_pickled_pipeline" in c]
    assert len(jobs) == len(stages)  # plus one stats-merge job per stage
    for i, (name, (contents, args)) in enumerate(zip(stages, jobs)):
        script = (logs / name / "launch_script.slurm").read_text()
        assert script == contents
        assert "#SBATCH --partition=cpu" in script and "#SBATCH --account=proj" in script
        assert "#SBATCH --time=01:00:00" in script and "source /opt/venv/bin/activate" in script
        tasks = {"exact_find": 1, "minhash_buckets": 9, "minhash_cluster": 1,
                 "finalize": 1}.get(name, 3)
        assert f"#SBATCH --array=0-{tasks - 1}%8" in script
        assert f"launch_pickled_pipeline {logs / name / 'executor.pik'}" in script
        if i:  # each stage waits for the one before
            assert any(a.startswith("--dependency=afterok:") for a in args)
    assert not (tmp_path / "slurm" / "manifest.json").exists()

    monkeypatch.setenv("SLURM_NODELIST", "node1")  # what Slurm sets in every job
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodes: [nodes])  # scontrol
    for name in stages:
        executor = dill.loads((logs / name / "executor.pik").read_bytes())
        for task in range(executor.tasks):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
            executor.run()
    manifest = json.loads((tmp_path / "slurm" / "manifest.json").read_text())
    local = prepare(_source_cfg(tmp_path), tokenizer, tmp_path / "local")
    assert manifest["domains"] == local["domains"]
    assert _shard_bytes(tmp_path / "slurm") == _shard_bytes(tmp_path / "local")


def test_slurm_needs_a_partition(tmp_path, tokenizer):
    from youtu.errors import ConfigError

    with pytest.raises(ConfigError, match="data.executor.partition"):
        prepare(_source_cfg(tmp_path, executor=ExecutorConfig(kind="slurm")), tokenizer,
                tmp_path / "out")


def test_the_task_file_writer_writes_what_datatrove_default_writes(tmp_path):
    """Its adapter skips `dataclasses.asdict` (a deep copy per document): same records."""
    from datatrove.data import Document as DTDocument
    from datatrove.data import Media

    from youtu.data import steps

    writer = steps.task_file_writer(str(tmp_path))
    docs = [DTDocument(text="abc", id="0/1", metadata={"domain": "x", "meta": {"a": [1]}}),
            DTDocument(text="", id="1/2"), DTDocument(text="t", id="", metadata={}),
            DTDocument(text="m", id="3", media=[Media(id="p", type=0, url="u")])]
    for doc in docs:
        assert writer.adapter(doc) == writer._default_adapter(doc)
