"""OpenAI-compatible completions endpoint as an evaluation backend (vLLM, SGLang, our server).

    lm = EndpointLM("http://127.0.0.1:8000/v1", "Youtu-LLM-2B-Base")
    lm.generate_until([GenerationRequest("2+2=", max_new_tokens=4)])

Generation posts `/completions` (one prompt per request, `batch_size` requests in flight: the
server batches them). Log-likelihoods use the `echo` + `logprobs` convention of the OpenAI
completions API (vLLM and SGLang implement it): the server returns every prompt token with its
log-probability and character offset; the continuation is the tokens that end after the
context's last non-space character, which matches lm-eval's boundary rule (trailing context
whitespace belongs to the continuation; a token merging across the boundary is scored).
Servers without echo support answer log-likelihood requests (and truncation) with an error.

Prompts longer than the context (`max_length`, else the server's `max_model_len` from
`/models`, as vLLM and `youtu serve` report it) are cut by `truncate` with the harness's rule,
using the server's own tokenization (an `echo` request gives each prompt token's character
offset), so no local tokenizer is needed. A request the server refuses (a 4xx other than 429)
fails only its own item: generation returns '' and log-likelihoods -inf (a rolling
log-likelihood raises: bits per byte without the text would be biased); the refusal is kept
in `EndpointLM.errors` and logged. 429, 5xx and transport errors are retried.
"""

from __future__ import annotations

import logging
import math
import threading
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


class RequestRefused(RuntimeError):
    """The server answered 4xx (not 429): this request is wrong for it, retrying cannot help."""


def _span(sizes: list[int], pos: int, budget: int, *, forward: bool) -> int:
    """The far end of the longest run of characters from `pos` (forward: text[pos:end];
    backward: text[start:pos]) whose UTF-8 sizes sum to at most `budget` (at least one)."""
    step, i, used = (1, pos, 0) if forward else (-1, pos - 1, 0)
    while 0 <= i < len(sizes) and (used + sizes[i] <= budget or i == pos - (not forward)):
        used += sizes[i]
        i += step
    return i if forward else i + 1


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
        self._max_length = max_length
        self.name = f"{model}@{base_url}"
        self.errors: list[str] = []
        """One line per request the server refused (a 4xx): the item scored as a failure."""
        self._lock = threading.Lock()

    @property
    def max_length(self) -> int:  # type: ignore[override]
        """Context in tokens: the constructor's, else the server's `max_model_len` (asked once),
        else unlimited (with a warning: prompts are then never cut)."""
        if not self._max_length:
            with self._lock:
                if not self._max_length:
                    self._max_length = self._server_max_length()
        return self._max_length

    def _server_max_length(self) -> int:
        try:
            resp = self.client.get("/models")
            resp.raise_for_status()
            for entry in resp.json().get("data", []):
                if entry.get("id") == self.model and entry.get("max_model_len"):
                    return int(entry["max_model_len"])
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            logger.warning("could not read max_model_len from %s/models: %s", self.client.base_url,
                           e)
        logger.warning("%s: context length unknown (pass max_length); prompts are not truncated",
                       self.name)
        return 1 << 30

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retries):
            try:
                resp = self.client.post("/completions", json={"model": self.model, **payload})
                if resp.status_code < 400:
                    return resp.json()
                if resp.status_code < 500 and resp.status_code != 429:
                    raise RequestRefused(f"{self.client.base_url}/completions answered "
                                         f"{resp.status_code}: {resp.text[:300]}")
                logger.warning("endpoint answered %s (attempt %d)", resp.status_code, attempt + 1)
            except httpx.TransportError as e:
                logger.warning("endpoint unreachable: %s (attempt %d)", e, attempt + 1)
            if attempt + 1 < self.retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise RuntimeError(f"{self.client.base_url}/completions failed {self.retries} times")

    def _map(self, fn, items: Sequence[Any], failed: Any = None) -> list[Any]:
        """`fn` over `items`, `batch_size` at a time; an item the server refuses gets `failed`
        (None: the refusal is raised, for results that a missing item would bias)."""
        def guarded(item: Any) -> Any:
            try:
                return fn(item)
            except RequestRefused as e:
                if failed is None:
                    raise
                logger.warning("item scored as a failure: %s", e)
                with self._lock:
                    self.errors.append(str(e))
                return failed

        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(guarded, items))

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int, bool]:
        """The harness's rule (first and last `max_tokens // 2` tokens) with the server's
        tokenizer. A text of fewer than `max_tokens` UTF-8 bytes is never longer (a token is at
        least one byte; one is left for BOS), so it costs no request. A longer one is tokenized
        in pieces of that size from each end (the server refuses to echo a prompt longer than
        its context), until each end holds half the budget or the two ends meet."""
        if len(text.encode("utf-8")) < max_tokens:
            return text, -1, False
        half = max_tokens // 2
        sizes = [len(c.encode("utf-8")) for c in text]
        head_end, need, pos = 0, half, 0  # head: text[:head_end] holds `half` tokens
        while need and pos < len(text):
            piece_end = _span(sizes, pos, max_tokens - 1, forward=True)
            starts = self._starts(text[pos:piece_end])
            if len(starts) > need:
                head_end = pos + starts[need]
                need = 0
            else:
                need -= len(starts)
                head_end = pos = piece_end
        tail_start, need, pos = len(text), half, len(text)
        while need and pos > head_end:
            piece_start = max(_span(sizes, pos, max_tokens - 1, forward=False), head_end)
            starts = self._starts(text[piece_start:pos])
            if len(starts) >= need:
                tail_start = piece_start + starts[len(starts) - need]
                need = 0
            else:
                need -= len(starts)
                tail_start = pos = piece_start
        if tail_start <= head_end:  # the ends met: at most 2 * half tokens in all
            return text, -1, False
        return text[:head_end] + text[tail_start:], 2 * half, True

    def _starts(self, text: str) -> list[int]:
        """Character offsets where the server's tokens of `text` start."""
        return [off for off in self._echo(text)["text_offset"] if 0 <= off < len(text)]

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        def one(req: GenerationRequest) -> str:
            payload: dict[str, Any] = {"prompt": req.prompt, "max_tokens": req.max_new_tokens,
                                       "temperature": req.temperature, "top_p": req.top_p,
                                       "seed": req.seed}
            if req.until:
                payload["stop"] = list(req.until[:MAX_STOP])
            text = self._post(payload)["choices"][0]["text"]
            return cut_at_stop(text, req.until)

        return self._map(one, requests, "")

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

        return self._map(one, requests, Loglikelihood(-math.inf, False, 0))

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingLoglikelihood]:
        """Whole-text log-likelihood; a first token without context on the server side (a
        server that adds no BOS) is not scored (nor counted in `num_tokens`)."""
        def one(text: str) -> RollingLoglikelihood:
            lp = self._echo(text)
            scored = [x for x, off in zip(lp["token_logprobs"], lp["text_offset"])
                      if x is not None and 0 <= off < len(text)]
            return RollingLoglikelihood(sum(scored), len(scored), len(text.encode("utf-8")))

        return self._map(one, texts)  # a bits-per-byte without one of its texts is biased
