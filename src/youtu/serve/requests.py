"""Request-side types of the engine: results, stream deltas, handles and async streams.

    handle = engine.submit(ids, params)        # RequestHandle
    for delta in handle: ...                    # StreamDelta per step; last has .completion
    completion = handle.result()                # Completion
    async for delta in engine.stream(ids, params): ...   # AsyncStream (server side)

`SequenceState` is the engine's own bookkeeping for one request (row, tokens so far, ...).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from youtu.serve.sampling import SamplingParams

if TYPE_CHECKING:
    from youtu.serve.engine import Engine


class RequestError(ValueError):
    """A request that can never be served as given (the message says why and what to change)."""


class EngineFullError(RuntimeError):
    """The waiting queue is full; retry later (HTTP 503)."""


@dataclass
class Completion:
    """The finished result of one request."""

    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    """Generated ids; a stop token that ended the request is included."""
    logprobs: list[float]
    """Per generated token, under the sampling distribution actually used (see sampling.py)."""
    finish_reason: str | None
    """'stop' (EOS, stop token or stop string), 'length' (max_tokens or context), 'abort'
    (cancelled) or 'error'."""
    stop_reason: int | str | None = None
    """The stop token id (from `stop_token_ids`) or stop string that ended it; None when EOS
    or a limit did (as in vLLM)."""
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per generated token, the `top_logprobs` most likely (id, log-prob), when asked."""
    prompt_logprobs: list[float | None] = field(default_factory=list)
    """Per prompt token (first is None), under the raw model, when asked."""
    prompt_top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    error: str | None = None


@dataclass
class StreamDelta:
    """What one step added to a request; the last delta has `finish_reason` and `completion`."""

    token_ids: list[int]
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None
    completion: Completion | None = None


@dataclass(eq=False)
class SequenceState:
    """Engine-side state of one request."""

    id: str
    prompt: list[int]
    params: SamplingParams
    sink: Callable[[StreamDelta], None]
    generator: torch.Generator | None
    stop_ids: frozenset[int]
    row: int = -1
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    prompt_logprobs: list[float | None] = field(default_factory=list)
    prompt_top: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    error: str | None = None
    submitted_at: float = 0.0

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)

    def completion(self) -> Completion:
        return Completion(self.id, self.prompt, self.tokens, self.logprobs, self.finish_reason,
                          self.stop_reason, self.top, self.prompt_logprobs, self.prompt_top,
                          self.error)


class RequestHandle:
    """A submitted request: iterate for `StreamDelta`s (blocking), or `result()`."""

    def __init__(self, engine: Engine, request_id: str, keep_deltas: bool = True):
        self.engine = engine
        self.id = request_id
        self._deltas: queue.Queue[StreamDelta] | None = queue.Queue() if keep_deltas else None
        self._done = threading.Event()
        self._completion: Completion | None = None

    def _push(self, delta: StreamDelta) -> None:
        if self._deltas is not None:
            self._deltas.put(delta)
        if delta.completion is not None:
            self._completion = delta.completion
            self._done.set()

    def __iter__(self) -> Iterator[StreamDelta]:
        if self._deltas is None:
            raise TypeError("this request streams to its own sink; it cannot be iterated")
        while True:
            if not self.engine.running and self._deltas.empty():
                self.engine.step()
                continue
            delta = self._deltas.get()
            yield delta
            if delta.finish_reason is not None:
                return

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Completion:
        """Block until finished (drives the engine itself when no background loop runs)."""
        if not self.engine.running:
            while not self._done.is_set():
                self.engine.step()
        if not self._done.wait(timeout):
            raise TimeoutError(f"request {self.id} did not finish within {timeout} s")
        assert self._completion is not None
        return self._completion

    def cancel(self) -> None:
        self.engine.cancel(self.id)


class AsyncStream:
    """Async deltas of one request. Cancelled (its cache row freed) when the consuming task is
    cancelled, e.g. because the HTTP client went away, or on `cancel()` / leaving `async with`."""

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams | None,
                 request_id: str | None):
        loop = asyncio.get_running_loop()
        self._deltas: asyncio.Queue[StreamDelta] = asyncio.Queue()
        self.finished = False
        self.handle = engine.submit(prompt, params, request_id=request_id,
                                    sink=lambda d: loop.call_soon_threadsafe(self._deltas.put_nowait, d))

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> StreamDelta:
        if self.finished:
            raise StopAsyncIteration
        try:
            delta = await self._deltas.get()
        except asyncio.CancelledError:
            self.cancel()
            raise
        self.finished = delta.finish_reason is not None
        return delta

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Stop the request unless it already finished."""
        if not self.finished:
            self.handle.cancel()

    async def completion(self) -> Completion:
        """Wait for the end and return the `Completion`."""
        async with self:
            async for delta in self:
                if delta.completion is not None:
                    return delta.completion
        raise RuntimeError(f"request {self.handle.id} ended without a completion")
