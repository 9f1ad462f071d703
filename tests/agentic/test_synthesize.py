"""`youtu synth`: a small multi-domain run (workers, shards, dedup, stats), resuming, the same
files whatever the worker count, config checks, the CLI, and the LLM teacher path."""

from __future__ import annotations

import json
import socket

import pytest

from youtu.agentic.config import LLMTeacherConfig, SynthConfig
from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.synthesize import (_init_worker, _scripted_solver, plan_jobs,
                                      run_scripted_job, synthesize)
from youtu.agentic.trajectory import load_trajectories
from youtu.config import ConfigError

MIX = {"math": 10, "code": 3, "tools": 10, "research": 10, "swe": 2, "pydocs": 6}


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


def test_growing_the_mix_solves_the_new_tasks_and_keeps_untouched_shards(tmp_path):
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    small = SynthConfig(mix={"research": 5}, shard_size=4, workers=1)
    synthesize(small, out)
    first = out / "research" / "shard_00000.jsonl"
    before = first.read_bytes(), first.stat().st_mtime_ns
    grown = SynthConfig(mix={"research": 8}, shard_size=4, workers=1)
    solved = []

    def solver(jobs):  # the scripted solver, recording what it is asked to solve
        solved.extend(jobs)
        yield from _scripted_solver(grown)(jobs)

    stats = synthesize(grown, out, solver=solver)
    assert solved == [("research", 1, 4, 8)]  # the shard whose range grew, nothing else
    assert stats["domains"]["research"]["attempted"] == 8 and stats["new_shards"] == 1
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    side = json.loads((out / "research" / "shard_00001.stats.json").read_text())
    assert side["range"] == [4, 8] and side["attempted"] == 4
    synthesize(grown, fresh)
    assert _files(fresh) == _files(out)  # as if it had been this size from the start
    for mix in ({"research": 6}, {"research": 3}):  # shrinking would leave stale shards behind
        with pytest.raises(ConfigError, match="grow but not shrink.*synth.mix.research"):
            synthesize(SynthConfig(mix=mix, shard_size=4, workers=1), out)


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


def _closed_port_url() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _math_answers(n: int) -> dict[str, str]:
    tasks = [ENVIRONMENTS["math"].generate(i, 1 + i % 3) for i in range(n)]
    return {t.prompt: t.answer for t in tasks}


def _llm_synth(url: str, n: int = 4) -> SynthConfig:
    return SynthConfig(mix={"math": n}, teacher="llm", shard_size=4, llm=LLMTeacherConfig(
        base_url=url, api_key_env="", max_retries=1, backoff_s=0.01, timeout_s=5.0,
        samples_per_task=1, rewrite_cot=False))


def _answering(answers: dict[str, str], down: set[str] = frozenset()):
    """A fake teacher that answers right at once, and fails (HTTP 503) on prompts in `down`."""
    def reply(body, n):
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if prompt in down:
            return ("raw", 503, "overloaded")
        return {"role": "assistant", "content": f"\\boxed{{{answers[prompt]}}}"}
    return reply


def test_unreachable_teacher_fails_the_run_and_marks_nothing_done(tmp_path, fake_openai):
    url = _closed_port_url()
    with pytest.raises(ConfigError, match=r"synth\.llm\.base_url='" + url) as err:
        synthesize(_llm_synth(url), tmp_path)
    assert "ConnectError" in str(err.value) and "tried 2 times" in str(err.value)
    assert not list(tmp_path.rglob("shard_*"))
    # the server comes up elsewhere: the same folder resumes (the endpoint is not part of the
    # run's identity) and every task is solved
    server = fake_openai(_answering(_math_answers(4)))
    stats = synthesize(_llm_synth(server.url), tmp_path)
    assert stats["kept"] == stats["attempted"] == 4 and stats["request_errors"] == 0


def test_tasks_that_hit_request_errors_are_retried_on_resume(tmp_path, fake_openai):
    answers = _math_answers(4)
    prompts = list(answers)
    flaky = fake_openai(_answering(answers, down={prompts[0], prompts[2]}))
    stats = synthesize(_llm_synth(flaky.url), tmp_path)
    math = stats["domains"]["math"]
    assert math["kept"] == 2 and math["request_errors"] == 2 and math["failed"] == 0
    side = json.loads((tmp_path / "math" / "shard_00000.stats.json").read_text())
    assert side["retry"] == [0, 2] and "503" in side["last_error"]

    good = fake_openai(_answering(answers))
    stats = synthesize(_llm_synth(good.url), tmp_path)
    asked = [next(m["content"] for m in b["messages"] if m["role"] == "user")
             for b in good.requests]
    assert sorted(asked) == sorted([prompts[0], prompts[2]])  # only the abandoned tasks
    math = stats["domains"]["math"]
    assert math["kept"] == math["attempted"] == 4 and math["request_errors"] == 0
    assert [t.task.seed for t in load_trajectories(tmp_path)] == [0, 1, 2, 3]  # task order
    side = json.loads((tmp_path / "math" / "shard_00000.stats.json").read_text())
    assert side["retry"] == [] and side["verified"] == 4 and len(side["task_keys"]) == 4
    synthesize(_llm_synth(good.url), tmp_path)
    assert len(good.requests) == 2  # complete now: nothing asked again


@pytest.fixture(scope="module")
def youtu_serve(tmp_path_factory):
    """`youtu serve`'s app (server.create_app over the real Engine) with a tiny random
    checkpoint, on a free loopback port in a thread."""
    import threading
    import time

    import torch
    import uvicorn

    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.serve.config import ServeConfig
    from youtu.serve.engine import Engine
    from youtu.serve.server import create_app
    from youtu.tokenizer.train import train_from_texts

    texts = [ENVIRONMENTS[d].generate(i, 1).prompt for d in ("math", "tools", "research")
             for i in range(30)] + ["\\boxed{42} The answer is 7. def f(x): return x"] * 20
    tok = train_from_texts(texts, vocab_size=1024)
    torch.manual_seed(0)
    model = YoutuForCausalLM(ModelConfig.tiny(vocab_size=tok.vocab_size))
    model.init_weights()
    engine = Engine(model.eval(), max_batch=4, max_seq_len=2048, eos_ids=[tok.eos_id],
                    detokenize=tok.decode)
    app = create_app(engine, tok, ServeConfig(served_model_name="teacher", max_new_tokens=16,
                                              max_seq_len=2048))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", app.state.server
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_llm_teacher_against_a_real_youtu_serve_in_all_four_domains(tmp_path, youtu_serve):
    """The whole LLM-teacher path over HTTP to the real server and engine: tool schemas in the
    requests, replies parsed by the server's chat template, episodes run in each environment
    (code in its sandbox) and judged by its verifier. A random tiny model solves nothing, so
    every task is judged and rejected, none is lost to a request error."""
    url, server = youtu_serve
    mix = {"math": 2, "code": 1, "tools": 2, "research": 2}
    cfg = SynthConfig(mix=mix, teacher="llm", shard_size=4, llm=LLMTeacherConfig(
        base_url=url, api_key_env="", max_retries=0, timeout_s=60.0, samples_per_task=1,
        max_turns=2, max_tokens=16, temperature=0.0, rewrite_cot=False, concurrency=2))
    before = server.http_status[("/v1/chat/completions", 200)]
    stats = synthesize(cfg, tmp_path)
    for domain, n in mix.items():
        d = stats["domains"][domain]
        assert d["attempted"] == n and d["request_errors"] == 0, (domain, d)
        assert d["verified"] + d["failed"] == n
    assert server.http_status[("/v1/chat/completions", 200)] - before >= sum(mix.values())
    assert stats["request_errors"] == 0
