"""LLM teacher against a fake OpenAI-compatible server on loopback: tool loops, rejection
sampling by the verifier, retries on timeouts / 5xx / malformed replies, Hermes text replies,
Agentic-CoT rewriting and its fallback."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from youtu.agentic.config import LLMTeacherConfig
from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.llm_teacher import LLMTeacher, REWRITE_PROMPT, heuristic_phases
from youtu.agentic.trajectory import PHASES

MATH = ENVIRONMENTS["math"]


def _tasks(n: int) -> list:
    return [MATH.generate(seed, 1 + seed % 3) for seed in range(n)]


def _cfg(url: str, **kw) -> LLMTeacherConfig:
    base = dict(base_url=url, model="fake", timeout_s=2.0, max_retries=2, backoff_s=0.01,
                samples_per_task=3, concurrency=4, api_key_env="")
    return LLMTeacherConfig(**{**base, **kw})


def _call(name: str, args: dict, k: int = 0) -> dict:
    return {"id": f"x{k}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def _solver(answers: dict[str, str], wrong_first: set[str] = frozenset(),
            hermes: set[str] = frozenset(), rewrite_ok: bool = True):
    """A fake teacher model: calls the calculator once, then answers (wrongly on the first
    sample for prompts in `wrong_first`)."""
    attempts: dict[str, int] = {}

    def reply(body: dict, n: int) -> dict:
        msgs = body["messages"]
        if msgs[0]["content"] == REWRITE_PROMPT:
            turns = json.loads(msgs[1]["content"])["turns"]
            if not rewrite_ok:
                return {"role": "assistant", "content": "Sure! Here is the rewrite: <analysis>"}
            first = "<analysis>\n{}\n</analysis>\n<plan>\nUse the calculator.\n</plan>"
            later = "<reflection>\nChecked.\n</reflection>\n<summary>\nDone.\n</summary>"
            out = [first.format(t["reasoning"]) if i == 0 else later for i, t in enumerate(turns)]
            return {"role": "assistant", "content": "```json\n" + json.dumps(out) + "\n```"}
        prompt = next(m["content"] for m in msgs if m["role"] == "user")
        assert "tools" in body and body["tools"][0]["function"]["name"] == "calculator"
        assert all("reasoning_content" not in m for m in msgs)  # never sent back
        if msgs[-1]["role"] == "user":
            attempts[prompt] = attempts.get(prompt, 0) + 1
            if prompt in hermes:
                return {"role": "assistant", "content": '<think>\nI add first.\n</think>\n\n'
                        '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}'
                        '</tool_call>'}
            return {"role": "assistant", "content": None, "reasoning_content": "Compute it.",
                    "tool_calls": [_call("calculator", {"expression": "1+1"})]}
        assert msgs[-1]["role"] == "tool" and msgs[-1]["content"] == "2"
        answer = answers[prompt]
        if prompt in wrong_first and attempts[prompt] == 1:
            answer = "12345/7"
        return {"role": "assistant", "reasoning_content": "The result follows.",
                "content": f"So the answer is \\boxed{{{answer}}}."}
    return reply


def test_episodes_are_verified_and_rewritten(fake_openai):
    tasks = _tasks(4)
    server = fake_openai(_solver({t.prompt: t.answer for t in tasks},
                                 wrong_first={tasks[1].prompt}, hermes={tasks[2].prompt}))
    trajs, stats = LLMTeacher(_cfg(server.url)).solve_many(MATH, tasks)
    assert len(trajs) == 4 and stats["verified"] == 4 and stats["rejected"] == 1
    for traj, task in zip(trajs, tasks):
        traj.validate()
        assert traj.outcome.verified and traj.outcome.checker == "math/sympy-exact"
        assert traj.provenance["cot"] == "llm-rewrite"
        assert [p.name for p in traj.phases][:2] == ["analysis", "plan"]
        assert traj.phases[-1].name == "summary"
        assert traj.tool_calls() == [{"name": "calculator", "arguments": {"expression": "1+1"}}]
        assert traj.messages[2]["tool_calls"][0]["id"] == "call_0"
    assert trajs[1].provenance["sample"] == 1  # the first sample was rejected by the verifier
    assert trajs[2].messages[2]["tool_calls"]  # parsed from Hermes text in `content`


def test_retries_on_timeouts_server_errors_and_malformed_replies(fake_openai):
    tasks = _tasks(1)
    solve = _solver({tasks[0].prompt: tasks[0].answer})

    def flaky(body: dict, n: int):
        if n == 1:
            return ("sleep", 1.0, solve(body, n))  # past the 0.3 s client timeout
        if n == 2:
            return ("raw", 503, "overloaded")
        if n == 3:
            return ("raw", 200, "{not json")
        if n == 4:
            return {"role": "assistant", "content": "",
                    "tool_calls": [{"id": "a", "type": "function",
                                    "function": {"name": "calculator", "arguments": "{oops"}}]}
        return solve(body, n)

    server = fake_openai(flaky)
    cfg = _cfg(server.url, timeout_s=0.3, max_retries=4, rewrite_cot=False)
    trajs, stats = LLMTeacher(cfg).solve_many(MATH, tasks)
    assert len(trajs) == 1 and trajs[0].outcome.verified
    assert stats["timeouts"] == 1 and stats["http_errors"] == 1 and stats["malformed"] == 2
    assert stats["retries"] == 4


def test_a_malformed_tool_call_is_fed_back_and_the_sample_rejected_not_the_task(fake_openai):
    """Issue 19: Hermes text whose <tool_call> does not parse is the model's mistake: it gets
    the parse error as an observation (not a server retry that ends in an abandoned task), the
    episode holding it is rejected, and the next sample is judged."""
    tasks = _tasks(1)
    solve = _solver({tasks[0].prompt: tasks[0].answer})
    seen = []

    def reply(body: dict, n: int):
        msgs = body["messages"]
        seen.append(msgs[-1])
        if n == 1:
            return {"role": "assistant", "content": '<tool_call>{"name": "calculator", '
                    '"arguments": {"expression": }</tool_call>'}
        if msgs[-1]["role"] == "user" and "could not be read" in msgs[-1]["content"]:
            return {"role": "assistant", "content": "",
                    "tool_calls": [_call("calculator", {"expression": "1+1"})]}
        return solve(body, n)

    server = fake_openai(reply)
    trajs, stats = LLMTeacher(_cfg(server.url, rewrite_cot=False)).solve_many(MATH, tasks)
    assert len(trajs) == 1 and trajs[0].outcome.verified and trajs[0].provenance["sample"] == 1
    assert stats["malformed_calls"] == 1 and stats["request_errors"] == 0
    assert stats.get("malformed", 0) == 0  # not mistaken for a broken server reply
    assert "calculator" in seen[1]["content"]  # the error names the offered tools
    assert all("<tool_call>" not in (m.get("content") or "") for m in trajs[0].messages)


def test_gives_up_after_retries_and_rejects_wrong_answers(fake_openai):
    tasks = _tasks(2)
    dead = fake_openai(lambda body, n: ("raw", 500, "down"))
    trajs, stats = LLMTeacher(_cfg(dead.url, max_retries=1)).solve_many(MATH, tasks)
    # a failed request abandons the task (no further samples) and is not a verifier failure
    assert trajs == [] and stats["requests"] == 2 * 2 and stats["samples"] == 2
    assert stats["request_errors"] == 2 and stats["errored"] == [0, 1] and stats["failed"] == 0
    assert f"synth.llm.base_url={dead.url!r}" in stats["last_error"]
    wrong = fake_openai(_solver({t.prompt: "12345/7" for t in tasks}))
    trajs, stats = LLMTeacher(_cfg(wrong.url)).solve_many(MATH, tasks)
    assert trajs == [] and stats["rejected"] == 2 * 3 and stats["failed"] == 2
    assert stats["request_errors"] == 0 and "errored" not in stats


def _closed_port_url() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_refusals_and_connection_errors_name_the_endpoint_and_model(fake_openai):
    tasks = _tasks(1)
    refused = fake_openai(lambda body, n: ("raw", 404, "The model `fake` does not exist."))
    _, stats = LLMTeacher(_cfg(refused.url)).solve_many(MATH, tasks)
    assert stats["requests"] == 1 and stats["request_errors"] == 1  # a 4xx is not retried
    msg = stats["last_error"]
    assert "HTTP 404" in msg and "does not exist" in msg
    assert f"synth.llm.base_url={refused.url!r}" in msg and "synth.llm.model='fake'" in msg
    url = _closed_port_url()
    _, stats = LLMTeacher(_cfg(url, max_retries=1)).solve_many(MATH, tasks)
    msg = stats["last_error"]
    assert stats["requests"] == 2 and "ConnectError" in msg and "after 2 attempts" in msg
    assert f"synth.llm.base_url={url!r}" in msg and "synth.llm.model='fake'" in msg


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_run_concurrently_up_to_the_limit(fake_openai, concurrency):
    tasks = _tasks(6)
    answers = {t.prompt: t.answer for t in tasks}
    gate = threading.Condition()
    in_flight, peak = 0, 0

    def reply(body: dict, n: int) -> dict:
        nonlocal in_flight, peak
        with gate:
            in_flight += 1
            peak = max(peak, in_flight)
            gate.notify_all()
            # hold the first requests until `concurrency` were in flight together (or 1 s
            # passed): a client that sends them one by one shows a peak of 1
            gate.wait_for(lambda: peak >= concurrency, timeout=1.0)
        time.sleep(0.05)  # and overlap: a client over the limit shows a higher peak
        with gate:
            in_flight -= 1
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return {"role": "assistant", "content": f"\\boxed{{{answers[prompt]}}}"}

    server = fake_openai(reply)
    cfg = _cfg(server.url, concurrency=concurrency, rewrite_cot=False)
    trajs, stats = LLMTeacher(cfg).solve_many(MATH, tasks)
    assert len(trajs) == 6 and stats["requests"] == 6
    assert peak == concurrency


def test_bad_rewrites_fall_back_to_heuristic_phases(fake_openai):
    tasks = _tasks(1)
    server = fake_openai(_solver({tasks[0].prompt: tasks[0].answer}, rewrite_ok=False))
    trajs, stats = LLMTeacher(_cfg(server.url)).solve_many(MATH, tasks)
    traj = trajs[0]
    assert traj.provenance["cot"] == "heuristic" and stats["bad_rewrites"] == 3
    names = [p.name for p in traj.phases]
    assert names[:3] == ["analysis", "plan", "action"] and names[-1] == "summary"
    assert set(names) <= set(PHASES)
    assert re.search(r"Final answer: .*boxed", traj.phases[-1].text)


def test_heuristic_phases_cover_first_middle_and_last_turns():
    msg = {"role": "assistant", "reasoning_content": "Para one.\n\nPara two.",
           "tool_calls": [_call("search", {"query": "q"})], "content": ""}
    assert [n for n, _ in heuristic_phases(msg, 0, 3)] == ["analysis", "plan", "action"]
    assert [n for n, _ in heuristic_phases(msg, 1, 3)] == ["reflection", "action"]
    last = {"role": "assistant", "reasoning_content": "", "content": "42"}
    assert heuristic_phases(last, 2, 3) == [("summary", "Final answer: 42")]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="base_url"):
        LLMTeacherConfig(base_url="localhost:8000")
    with pytest.raises(ValueError, match="concurrency"):
        LLMTeacherConfig(concurrency=0)
