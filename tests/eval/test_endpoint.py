"""The OpenAI-completions backend against a scripted in-process server (httpx MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from youtu.eval.endpoint import EndpointLM
from youtu.eval.harness import GenerationRequest


def _server(requests: list[dict]):
    """One character = one token, log-prob -0.5 each; generation echoes a fixed text."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        assert request.url.path.endswith("/completions")
        if body.get("echo"):
            text = body["prompt"]
            toks = list(text) + ["!"]  # plus the one generated token
            return httpx.Response(200, json={"choices": [{"text": text + "!", "logprobs": {
                "tokens": toks, "token_logprobs": [None] + [-0.5] * (len(toks) - 1),
                "top_logprobs": [None] + [{t: -0.5} for t in toks[1:]],
                "text_offset": list(range(len(toks)))}}]})
        return httpx.Response(200, json={"choices": [{"text": "hello\nworld ```"}]})
    return httpx.MockTransport(handle)


def test_generate_and_score_through_the_api():
    seen: list[dict] = []
    lm = EndpointLM("http://fake/v1", "m", transport=_server(seen), batch_size=2)
    out = lm.generate_until([GenerationRequest("Q", 5, until=("```", "a", "b", "c", "\n"))])
    assert out == ["hello"]
    assert seen[0]["stop"] == ["```", "a", "b", "c"] and seen[0]["max_tokens"] == 5
    ll = lm.loglikelihood([("ab", "cd"), ("ab ", "cd")])
    assert [(r.logprob, r.num_tokens, r.is_greedy) for r in ll] == [(-1.0, 2, True),
                                                                  (-1.5, 3, True)]
    roll = lm.loglikelihood_rolling(["abcd"])[0]
    assert (roll.logprob, roll.num_tokens, roll.num_bytes) == (-1.5, 3, 4)


def test_server_errors_are_retried_then_reported():
    calls = []

    def handle(request):
        calls.append(1)
        return httpx.Response(503)

    lm = EndpointLM("http://fake/v1", "m", transport=httpx.MockTransport(handle), retries=2,
                     backoff_s=0.0)
    with pytest.raises(RuntimeError, match="failed 2 times"):
        lm.generate_until([GenerationRequest("Q", 1)])
    assert len(calls) == 2


def test_against_our_openai_server(tiny_checkpoint):
    """EndpointLM over HTTP against `youtu serve` gives the numbers our harness computes."""
    import socket
    import threading
    import time

    import uvicorn

    from youtu.eval.harness import CheckpointLM
    from youtu.serve.config import ServeConfig
    from youtu.serve.engine import load_engine
    from youtu.serve.server import create_app

    engine, tok = load_engine(tiny_checkpoint, max_batch=4, max_seq_len=512)
    app = create_app(engine, tok, ServeConfig(checkpoint=str(tiny_checkpoint),
                                              served_model_name="tiny"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        api = EndpointLM(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", "tiny", batch_size=2)
        local = CheckpointLM(tiny_checkpoint)
        # The server starts string prompts with BOS, as the harness does: same scores and text.
        pairs = [("The capital of France is", " Paris"), ("def add(a, b):\n    return", " a + b")]
        got, want = api.loglikelihood(pairs), local.loglikelihood(pairs)
        for res, ref in zip(got, want):
            assert res.num_tokens == ref.num_tokens
            assert res.logprob == pytest.approx(ref.logprob, abs=1e-3)
        request = GenerationRequest("import os\n", 6)
        assert api.generate_until([request]) == local.generate_until([request])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _limited_server(requests: list[dict], max_model_len: int = 16):
    """One character = one token; prompts over `max_model_len` tokens are refused with 400, as
    vLLM does; /models reports the context."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": max_model_len}]})
        body = json.loads(request.content)
        requests.append(body)
        if len(body["prompt"]) + body["max_tokens"] > max_model_len:
            return httpx.Response(400, json={"error": {"message": "prompt too long"}})
        if body.get("echo"):
            text = body["prompt"]
            return httpx.Response(200, json={"choices": [{"text": text + "!", "logprobs": {
                "tokens": list(text) + ["!"], "token_logprobs": [None] + [-0.5] * len(text),
                "text_offset": list(range(len(text) + 1))}}]})
        return httpx.Response(200, json={"choices": [{"text": "ok"}]})
    return httpx.MockTransport(handle)


def test_prompts_are_truncated_to_the_servers_context():
    seen: list[dict] = []
    lm = EndpointLM("http://fake/v1", "m", transport=_limited_server(seen))
    assert lm.max_length == 16  # from /models
    assert lm.truncate("short", 10) == ("short", -1, False) and seen == []  # no request needed
    text, n, cut = lm.truncate("abcdefghijklmnopqrstuvwxyz", 10)
    assert (text, n, cut) == ("abcdevwxyz", 10, True)  # first and last 5 tokens
    assert lm.generate_until([GenerationRequest(text, 4)]) == ["ok"]


def test_a_refused_request_fails_its_item_not_the_run():
    seen: list[dict] = []
    lm = EndpointLM("http://fake/v1", "m", transport=_limited_server(seen), retries=3,
                     backoff_s=0.0)
    out = lm.generate_until([GenerationRequest("x" * 40, 4), GenerationRequest("hi", 4)])
    assert out == ["", "ok"]
    assert len(seen) == 2  # a 400 is not retried
    assert len(lm.errors) == 1 and "400" in lm.errors[0]
    ll = lm.loglikelihood([("y" * 40, "z"), ("ab", "c")])
    assert ll[0].logprob == float("-inf") and ll[1].logprob == -0.5
