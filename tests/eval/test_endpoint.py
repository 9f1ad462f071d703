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
