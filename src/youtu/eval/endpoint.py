"""OpenAI-compatible completions endpoint as an evaluation backend (vLLM, SGLang, our server).

    lm = EndpointLM("http://127.0.0.1:8000/v1", "Youtu-LLM-2B-Base")
    lm.generate_until([GenerationRequest("2+2=", max_new_tokens=4)])

Generation posts `/completions` (one prompt per request, `batch_size` requests in flight: the
server batches them). Log-likelihoods use the `echo` + `logprobs` convention of the OpenAI
completions API (vLLM and SGLang implement it): the server returns every prompt token with its
log-probability and character offset; the continuation is the tokens that end after the
context's last non-space character, which matches lm-eval's boundary rule (trailing context
whitespace belongs to the continuation; a token merging across the boundary is scored).
Servers without echo support answer log-likelihood requests with an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from youtu.eval.harness import (GenerationRequest, LM, Loglikelihood, RollingLoglikelihood,
                                cut_at_stop)

logger = logging.getLogger(__name__)

MAX_STOP = 4
"""The OpenAI API accepts at most 4 stop strings; the rest are applied client-side."""


class EndpointLM(LM):
    """Any server speaking the OpenAI completions API."""

    adds_bos = True
    """Servers start string prompts with BOS (ours does; vLLM for tokenizers that add it)."""

    def __init__(self, base_url: str, model: str, *, api_key: str = "", batch_size: int = 8,
                 max_length: int = 0, timeout_s: float = 120.0, retries: int = 3,
                 backoff_s: float = 1.0, transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                   timeout=timeout_s, transport=transport)
        self.model, self.batch_size = model, batch_size
        self.retries, self.backoff_s = retries, backoff_s
        self.max_length = max_length or 1 << 30
        self.name = f"{model}@{base_url}"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retries):
            try:
                resp = self.client.post("/completions", json={"model": self.model, **payload})
                if resp.status_code < 500:
                    resp.raise_for_status()
                    return resp.json()
                logger.warning("endpoint answered %s (attempt %d)", resp.status_code, attempt + 1)
            except httpx.TransportError as e:
                logger.warning("endpoint unreachable: %s (attempt %d)", e, attempt + 1)
            if attempt + 1 < self.retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise RuntimeError(f"{self.client.base_url}/completions failed {self.retries} times")

    def _map(self, fn, items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(fn, items))

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        def one(req: GenerationRequest) -> str:
            payload: dict[str, Any] = {"prompt": req.prompt, "max_tokens": req.max_new_tokens,
                                       "temperature": req.temperature, "top_p": req.top_p,
                                       "seed": req.seed}
            if req.until:
                payload["stop"] = list(req.until[:MAX_STOP])
            text = self._post(payload)["choices"][0]["text"]
            return cut_at_stop(text, req.until)

        return self._map(one, requests)

    def _echo(self, text: str) -> dict[str, Any]:
        """Per-token logprobs of `text` itself (max_tokens=1: some servers refuse 0), with
        `text_offset` relative to `text`: tokens the server puts first (BOS, echoed as
        '<|begin_of_text|>' by ours) get negative offsets."""
        data = self._post({"prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                           "logprobs": 1})
        choice = data["choices"][0]
        logprobs = choice.get("logprobs")
        if not logprobs or "text_offset" not in logprobs:
            raise RuntimeError(f"{self.client.base_url} does not return echoed prompt logprobs; "
                               "log-likelihood tasks need a server that supports `echo`")
        start = (choice.get("text") or "").find(text) if text else 0
        if start < 0:
            raise RuntimeError(f"{self.client.base_url} echoed a text that does not contain the "
                               "prompt; cannot align token offsets")
        return {**logprobs, "text_offset": [off - start for off in logprobs["text_offset"]]}

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        def one(req: tuple[str, str]) -> Loglikelihood:
            context, continuation = req
            full = context + continuation
            boundary = len(context.rstrip())  # trailing context space goes to the continuation
            lp = self._echo(full)
            offsets, tokens = lp["text_offset"], lp["tokens"]
            total, greedy, n = 0.0, True, 0
            for i, (off, tok) in enumerate(zip(offsets, tokens)):
                end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tok)
                if off >= len(full) or end <= boundary:
                    continue  # the generated token, or a context token
                if lp["token_logprobs"][i] is None:
                    raise RuntimeError("the endpoint gave no logprob for a continuation token")
                total += lp["token_logprobs"][i]
                n += 1
                top = (lp.get("top_logprobs") or [None] * len(tokens))[i]
                if top:
                    greedy &= max(top, key=top.get) == tok
            return Loglikelihood(total, greedy, n)

        return self._map(one, requests)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingLoglikelihood]:
        """Whole-text log-likelihood; a first token without context on the server side (a
        server that adds no BOS) is not scored (nor counted in `num_tokens`)."""
        def one(text: str) -> RollingLoglikelihood:
            lp = self._echo(text)
            scored = [x for x, off in zip(lp["token_logprobs"], lp["text_offset"])
                      if x is not None and 0 <= off < len(text)]
            return RollingLoglikelihood(sum(scored), len(scored), len(text.encode("utf-8")))

        return self._map(one, texts)
