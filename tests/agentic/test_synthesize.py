"""`youtu synth`: a small multi-domain run (workers, shards, dedup, stats), resuming, the same
files whatever the worker count, config checks, the CLI, and the LLM teacher path."""

from __future__ import annotations

import json

import pytest

from youtu.agentic.config import SynthConfig
from youtu.agentic.synthesize import _init_worker, plan_jobs, run_scripted_job, synthesize
from youtu.agentic.trajectory import load_trajectories
from youtu.config import ConfigError

MIX = {"math": 10, "code": 3, "tools": 10, "research": 10}


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("shard_*.jsonl"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(mix=MIX, shard_size=4, workers=2, mistake_rate=0.5)
    return cfg, out, synthesize(cfg, out)


def test_run_writes_verified_shards_and_stats(run):
    cfg, out, stats = run
    trajs = list(load_trajectories(out))
    assert {t.domain for t in trajs} == set(MIX)
    assert all(t.outcome.verified and t.outcome.checker for t in trajs)
    assert all(t.task.seed < 1_000_000 for t in trajs)
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["kept"] == len(trajs) == stats["kept"]
    for name, d in on_disk["domains"].items():
        assert d["attempted"] == MIX[name] and d["success_rate"] == 1.0
        assert d["kept"] + d["duplicates"] == d["verified"]
        assert d["kept"] == sum(t.domain == name for t in trajs)
        assert {"total", "phase/analysis", "phase/plan", "phase/summary"} <= set(d["tokens"])
    assert on_disk["domains"]["research"]["tokens"]["tool_results"] > 0
    assert any(t.provenance["mistakes"] for t in trajs)
    ids = [t.id for t in trajs]
    assert len(ids) == len(set(ids))


def test_resume_skips_done_shards_and_rebuilds_missing_ones(run):
    cfg, out, stats = run
    before = _files(out)
    again = synthesize(cfg, out)
    assert again["new_shards"] == 0 and again["kept"] == stats["kept"]
    victim = out / "research" / "shard_00001.stats.json"
    victim.unlink()  # as if the run had died while writing this shard
    third = synthesize(cfg, out)
    assert third["new_shards"] == 1 and _files(out) == before


def test_output_does_not_depend_on_the_worker_count(run, tmp_path):
    cfg, out, _ = run
    serial = SynthConfig(mix=MIX, shard_size=4, workers=1, mistake_rate=0.5)
    synthesize(serial, tmp_path)
    assert _files(tmp_path) == _files(out)


@pytest.mark.parametrize("dedup", [True, False])
def test_dedup_drops_repeated_tasks(tmp_path, dedup):
    cfg = SynthConfig(mix={"research": 8}, shard_size=4, workers=1, dedup=dedup)
    _init_worker(cfg)
    _, first, first_stats = run_scripted_job(("research", 0, 0, 4))

    def solver(jobs):  # every shard comes back with the first shard's trajectories
        for job in jobs:
            yield job, first, first_stats

    stats = synthesize(cfg, tmp_path, solver=solver)["domains"]["research"]
    ids = [t.id for t in load_trajectories(tmp_path)]
    if dedup:
        assert stats["kept"] == len(first) == len(set(ids)) and stats["duplicates"] == len(first)
    else:
        assert stats["kept"] == 2 * len(first) and stats["duplicates"] == 0


def test_changed_config_refuses_to_mix_into_old_shards(run):
    cfg, out, _ = run
    with pytest.raises(ConfigError, match="different"):
        synthesize(SynthConfig(mix=MIX, shard_size=4, mistake_rate=0.1), out)


def test_config_checks():
    with pytest.raises(ValueError, match="reserved for evaluation"):
        SynthConfig(seed=999_990, mix={"math": 100})
    with pytest.raises(ValueError, match="unknown domain 'poetry'"):
        SynthConfig(mix={"poetry": 1})
    with pytest.raises(ValueError, match="mistake_rate"):
        SynthConfig(mistake_rate=1.5)
    jobs = plan_jobs(SynthConfig(mix={"math": 5, "code": 2}, shard_size=2))
    assert jobs == [("math", 0, 0, 2), ("code", 0, 0, 2), ("math", 1, 2, 4), ("math", 2, 4, 5)]


def test_cli_runs_synth_and_writes_the_config(tmp_path):
    from youtu.cli import main

    rc = main(["synth", "--out_dir=" + str(tmp_path), "--name=t", "--synth.workers=1",
               "--synth.mix={math = 3, research = 3}"])
    assert rc == 0
    out = tmp_path / "t" / "synth"
    assert (out / "config.toml").is_file() and (out / "stats.json").is_file()
    assert len(list(load_trajectories(out))) >= 5


def test_llm_teacher_path(tmp_path, fake_openai):
    from youtu.agentic.envs import ENVIRONMENTS

    answers = {ENVIRONMENTS["math"].generate(i, 1 + i % 3).prompt:
               ENVIRONMENTS["math"].generate(i, 1 + i % 3).answer for i in range(4)}

    def reply(body, n):
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return {"role": "assistant", "reasoning_content": "Known result.",
                "content": f"\\boxed{{{answers[prompt]}}}"}

    server = fake_openai(reply)
    cfg = SynthConfig(mix={"math": 4}, teacher="llm", shard_size=4)
    cfg.llm.base_url, cfg.llm.rewrite_cot, cfg.llm.api_key_env = server.url, False, ""
    stats = synthesize(cfg, tmp_path)
    assert stats["kept"] == 4 and stats["teacher"] == "llm"
    assert all(t.provenance["teacher"] == "llm:teacher" for t in load_trajectories(tmp_path))
