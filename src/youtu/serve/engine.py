"""Inference engine: continuous batching over the latent KV cache, token ids in and out.

    engine, tok = load_engine("runs/tiny/sft")
    [out] = engine.generate([tok.encode("Hello")], SamplingParams(temperature=0, max_tokens=32))
    print(tok.decode(out.token_ids), out.finish_reason)

    engine.start()                                   # background thread for a server
    async for delta in engine.stream(ids, params):   # or: for delta in engine.submit(ids, params)
        ...

Design (vLLM's, at the scale of one file):
- The cache is one `LatentCache` slab of `max_batch` rows x `max_seq_len` slots allocated up
  front (optionally sized from a byte budget), so concurrent sequences never fragment memory.
  A request takes a free row when it starts and gives it back when it ends; the model's
  `positions` / `cache_rows` arguments address the slab, so rows need not be contiguous.
- `step()` is one scheduler iteration: apply cancellations, admit waiting requests into free
  rows (prefill, padded and chunked to `prefill_chunk_tokens`), then one decode step for every
  running sequence. Requests beyond the free rows wait in a bounded queue; one that can never
  fit (prompt longer than the context) is refused with `RequestError` at submission.
- Sampling is `youtu.serve.sampling` (pure functions); the engine only stacks per-request
  settings. Stop strings need a `detokenize` callback (the engine sees token ids only).
- On CUDA the decode step is captured in CUDA graphs (`graphs.py`) per (batch bucket, attended
  length bucket), its elementwise work fused by torch.compile, and attention runs as a fused
  split-K kernel over the latent slab read in place (`youtu.model.decode_attention`); padding
  entries write to one scratch cache row. Neither the graphed nor the eager decode step syncs
  with the host before the sampled tokens are read back (the engine knows every length).
- Decode reads the weights in a decode-time layout (`fuse_weights`, `graphs.fuse_decode_weights`):
  gate+up and q_a+kv_a as one GEMV each, the parameters views of the fused tensors (state_dict,
  checkpoints and memory unchanged).
- `gemv="triton"` (CUDA only, needs the fused layout) runs the decode step's weight GEMVs for
  batches up to 8 as `youtu.model.decode_gemv` kernels with the norms, SwiGLU and residual
  adds fused in (`graphs.decode_step`); `"auto"` does so at batch 1, where they were
  measured faster (`decode_gemv.AUTO_MAX_ROWS`), and falls back to cuBLAS elsewhere; the
  default `"auto+pdl"` also launches those kernels dependently (Hopper).
- With `overlap` (CUDA only; on by default there: faster in every row measured) step N+1 is launched from step N's sampled tokens kept on
  the device, and step N's tokens are read back (delivered, stop-checked) while the GPU runs
  N+1: the host's work per step (~0.5 ms at 2B batch 1 on an H200, ~15% of the step) hides
  behind the GPU's. Exact: limits (max_tokens, context) are known ahead, so no step runs past
  them; a sequence that stops on a token (EOS, stop id, stop string) has one extra step
  computed and discarded; a request cancelled from a callback keeps exactly the tokens it had
  when it cancelled. Greedy and seeded requests get the same tokens as without overlap;
  unseeded rows draw other (equally distributed) noise from the shared generator.
- RL rollouts sample from a compute-dtype copy of the trained policy (`sampler_copy`, cast
  once) refreshed in place each round (`refresh_sampler`): the graphs read the same storage.

Threading: `submit()`, `cancel()` and `stream()` may be called from any thread; `step()` runs on
one thread at a time (the background loop from `start()`, or `generate()` when no loop runs).

The engine holds the model by reference: in-place weight updates (an RL trainer's optimizer
step) are used by the next step, CUDA graphs included (they read the same parameter storage).
Request types (`Completion`, `StreamDelta`, `RequestHandle`, `AsyncStream`) live in
`requests.py` and are re-exported here.
"""

from __future__ import annotations

import collections
import copy
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from youtu.model import decode_gemv
from youtu.model.cache import LatentCache
from youtu.model.device import resolve_device
from youtu.model.transformer import YoutuForCausalLM
from youtu.serve.graphs import DecodeGraphs, decode_step, decode_weights_fused, fuse_decode_weights
from youtu.serve.requests import (AsyncStream, Completion, EngineFullError, RequestError,
                                  RequestHandle, SequenceState, StreamDelta)
from youtu.serve.sampling import (SamplingBatch, SamplingParams, greedy_pick, plain_greedy,
                                  process_logits, sample, token_logprobs, top_logprobs)

if TYPE_CHECKING:
    from youtu.serve.config import ServeConfig
    from youtu.tokenizer import Tokenizer

__all__ = ["AsyncStream", "Completion", "Engine", "EngineFullError", "RequestError", "RequestHandle",
           "SamplingParams", "StreamDelta", "cache_budget_bytes", "engine_from_config", "load_engine",
           "refresh_sampler", "rows_for_budget", "sampler_copy"]

logger = logging.getLogger(__name__)

# Tokens a stop-string check decodes from the end of the output: every token is at least one
# byte and a character at most 4 bytes, so 4 tokens per character of the longest stop string
# (plus slack for a split UTF-8 sequence at the window start) always cover it.
_STOP_WINDOW_TOKENS_PER_CHAR = 4
_STOP_WINDOW_SLACK = 4
# Tokens/s is a rolling rate over this many seconds (what /metrics reports).
_RATE_WINDOW_S = 10.0


def rows_for_budget(bytes_per_token: int, max_batch: int, max_seq_len: int,
                    budget_bytes: int) -> int:
    """Cache rows that fit: min(max_batch, budget // (max_seq_len * bytes_per_token)); a budget
    of 0 means no cap. Raises ValueError when not even one full-length row fits."""
    if budget_bytes <= 0:
        return max_batch
    rows = min(max_batch, budget_bytes // (max_seq_len * bytes_per_token))
    if rows < 1:
        need = max_seq_len * bytes_per_token
        raise ValueError(f"cache budget of {budget_bytes} bytes holds no row of max_seq_len="
                         f"{max_seq_len} ({need} bytes per row at {bytes_per_token} bytes/token); "
                         f"raise the budget or lower max_seq_len")
    return rows


def sampler_copy(model: torch.nn.Module, dtype: torch.dtype) -> YoutuForCausalLM:
    """A frozen copy of `model` for sampling, cast once to the compute dtype (an RL policy
    keeps fp32 master weights; casting them under autocast on every token costs a weight-sized
    cast per matmul). Build the engine on it: its cache is then in `dtype` too.

    Make it before sharding (FSDP2) or wrapping the blocks' forwards (activation checkpointing,
    compile): a deep copy of a wrapped block keeps a forward bound to the original. Afterwards
    `refresh_sampler` gathers shards (DTensors) into it."""
    sampler = copy.deepcopy(model).requires_grad_(False).eval()
    if hasattr(sampler, "tie_weights"):
        sampler.tie_weights()
    return sampler.to(dtype)


@torch.no_grad()
def refresh_sampler(sampler: torch.nn.Module, model: torch.nn.Module) -> None:
    """Copy `model`'s current weights into `sampler` in place (cast to its dtype): the engine
    and its CUDA graphs read the same storage, so the next rollout is on-policy. FSDP2
    shards (DTensors) are gathered with `full_tensor()` (a collective: call on every rank)."""
    theirs = dict(model.named_parameters())
    mine = dict(sampler.named_parameters())
    if theirs.keys() != mine.keys():
        missing = sorted(theirs.keys() ^ mine.keys())[:3]
        raise ValueError(f"sampler and model parameters differ (e.g. {missing}); build the "
                         f"sampler with sampler_copy(model, dtype)")
    for name, p in theirs.items():
        mine[name].copy_(p.full_tensor() if hasattr(p, "full_tensor") else p)


@dataclass(kw_only=True)
class _Sampled:
    """One step's sampled tokens, launched on the device, not yet read by the host."""

    seqs: list[SequenceState]
    tokens: torch.Tensor
    """[n] long on the device (the next step's input ids)."""
    host: torch.Tensor
    """[2, n] float64 on the host: tokens, chosen log-probs (ids < 2**53 are exact in fp64);
    pinned and filled asynchronously on CUDA."""
    top: tuple[torch.Tensor, torch.Tensor] | None
    """Host copies of the [n, k] top log-probs and ids, when a request asks."""
    ready: torch.cuda.Event | None
    """Recorded after the copies (CUDA); None = the host tensors are already filled."""
    positions: torch.Tensor | None = None
    """[n] long on the device: the slots of this step's input tokens (decode steps only)."""
    rows: torch.Tensor | None = None
    """[n] long on the device: the sequences' cache rows (decode steps only)."""


def cache_budget_bytes(device: torch.device | str, fraction: float) -> int:
    """A latent-cache budget: `fraction` of the device memory free now (CUDA); 0 (= no cap)
    on the CPU. For rollouts next to a training state: size after the optimizer exists."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * fraction)


class Engine:
    """Continuous-batching generation over a preallocated latent cache.

    Args:
        model: a `YoutuForCausalLM` (eval mode is set here).
        max_batch: most concurrent sequences (cache rows).
        max_seq_len: context per sequence (prompt + output), in tokens.
        eos_ids: token ids that end every request (unless `ignore_eos`).
        cache_memory_bytes: cap on the cache slab; rows are reduced to fit (0 = no cap).
        max_queue: most requests waiting for a row; more are refused with `EngineFullError`.
        prefill_chunk_tokens: most tokens (rows x padded length) in one prefill forward.
        prefill_row_tokens: most tokens of one row in one prefill forward (None = as many as
            prefill_chunk_tokens allows). A later chunk attends to the row's cached slots
            through a dense [T, S] mask, so a long prompt wants short chunks even where many
            short prompts share big forwards.
        detokenize: ids -> text, needed for stop strings.
        use_cuda_graph: capture the decode step in CUDA graphs; None = on for CUDA models
            (True on a CPU model is an error).
        compile: fuse the graphed step's elementwise work with torch.compile (needs
            use_cuda_graph; batch 1 and larger batches compile once each); None = on with
            CUDA graphs.
        seed: seed of the generator shared by requests without their own seed.
        fuse_weights: decode with gate+up and q_a+kv_a as one GEMV each (the model's weights
            are laid out in place, see `graphs.fuse_decode_weights`; ignored for sharded
            parameters).
        overlap: launch each decode step before reading the previous one's tokens back (see
            the module docstring); None = on for CUDA, off elsewhere.
        gemv: 'cublas' (F.linear), 'triton' (the `decode_gemv` kernels with fused norms,
            SwiGLU and residuals, batches up to 8; CUDA with triton and `fuse_weights` only:
            elsewhere a ValueError) or 'auto' (the kernels at batch <= AUTO_MAX_ROWS where
            they can run, else cuBLAS); '+pdl' (the default 'auto+pdl') launches the kernels
            dependently (`decode_gemv.dependent_launch`).
    """

    def __init__(self, model: YoutuForCausalLM, *, max_batch: int, max_seq_len: int,
                 eos_ids: list[int] | tuple[int, ...] | set[int], cache_memory_bytes: int = 0,
                 max_queue: int = 1024, prefill_chunk_tokens: int = 2048,
                 prefill_row_tokens: int | None = None,
                 detokenize: Callable[[list[int]], str] | None = None,
                 use_cuda_graph: bool | None = None, compile: bool | None = None, seed: int = 0,
                 fuse_weights: bool = True, overlap: bool | None = None,
                 gemv: str = "auto+pdl"):
        if max_batch < 1 or max_seq_len < 2:
            raise ValueError(f"Engine needs max_batch >= 1 and max_seq_len >= 2, got "
                             f"{max_batch} and {max_seq_len}")
        if max_seq_len > model.config.max_position_embeddings:
            raise ValueError(f"max_seq_len={max_seq_len} exceeds the model's "
                             f"max_position_embeddings={model.config.max_position_embeddings}")
        if prefill_chunk_tokens < 1:
            raise ValueError(f"prefill_chunk_tokens must be >= 1, got {prefill_chunk_tokens}")
        self.model = model.eval()
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        if use_cuda_graph is None:
            use_cuda_graph = self.device.type == "cuda"
        if compile is None:
            compile = use_cuda_graph
        if use_cuda_graph and self.device.type != "cuda":
            raise ValueError("use_cuda_graph needs the model on a CUDA device")
        if compile and not use_cuda_graph:
            raise ValueError("compile applies to the CUDA-graph decode step: set use_cuda_graph too")
        bytes_per_token = model.kv_cache_bytes_per_token(self.dtype)
        self.max_batch = rows_for_budget(bytes_per_token, max_batch, max_seq_len, cache_memory_bytes)
        if self.max_batch < max_batch:
            logger.warning("cache budget fits %d of the %d requested rows", self.max_batch, max_batch)
        self.max_seq_len = max_seq_len
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.max_queue = max_queue
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.prefill_row_tokens = prefill_row_tokens or prefill_chunk_tokens
        self.detokenize = detokenize
        # A model that only implements `hidden_states` (a test double, a wrapper) decodes
        # through it; ours through `decode_step`, which the CUDA graphs capture too.
        self._stepwise = isinstance(model, YoutuForCausalLM)
        self.fused = fuse_weights and self._stepwise and fuse_decode_weights(model)
        if fuse_weights and self._stepwise and not self.fused:
            logger.warning("sharded parameters: decode keeps the separate projections")
        self.gemv = self._check_gemv(gemv)
        self.overlap = self.device.type == "cuda" if overlap is None else bool(overlap)
        self._inflight: _Sampled | None = None  # with overlap: the step launched, not yet read
        # One extra scratch row under CUDA graphs: padding entries of a batch bucket write there.
        rows = self.max_batch + (1 if use_cuda_graph else 0)
        self.cache = LatentCache(model.config, rows, max_seq_len, device=self.device, dtype=self.dtype)
        self.graphs = (DecodeGraphs(self, scratch_row=self.max_batch, compile=compile,
                                    fused=self.fused, gemv=self.gemv)
                       if use_cuda_graph else None)
        self._vocab = model.config.vocab_size
        self._seen: torch.Tensor | None = None  # [rows, V] bool, made when a request needs it
        self._default_gen = torch.Generator(device=self.device).manual_seed(seed)

        self._free_rows = list(range(self.max_batch - 1, -1, -1))  # pop() gives row 0 first
        self._waiting: collections.deque[SequenceState] = collections.deque()
        self._running: list[SequenceState] = []
        self._inbox: queue.SimpleQueue[SequenceState] = queue.SimpleQueue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()  # guards _cancelled and the queue-length check
        self._pending = 0  # submitted, not yet admitted (inbox + waiting)
        self._ids = itertools.count()
        self._batch_key: tuple[str, ...] = ()
        self._batch: SamplingBatch | None = None

        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()  # one step at a time, whoever drives it
        self._wake = threading.Event()
        self._stop = threading.Event()

        self.stats = collections.Counter()
        self._rate: collections.deque[tuple[float, int]] = collections.deque()
        self.peak_running = 0

    # ---- submission ---------------------------------------------------------------------------

    def submit(self, prompt: list[int], params: SamplingParams | None = None, *,
               request_id: str | None = None,
               sink: Callable[[StreamDelta], None] | None = None) -> RequestHandle:
        """Queue a request; returns its handle. Raises `RequestError` for a request that cannot
        be served (empty or too long prompt, bad token ids, stop strings without a detokenizer)
        and `EngineFullError` when the waiting queue is full."""
        params = params or SamplingParams()
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise RequestError("the prompt is empty; give at least one token")
        if len(prompt) >= self.max_seq_len:
            raise RequestError(f"the prompt has {len(prompt)} tokens but the context is "
                               f"{self.max_seq_len} (prompt + output); shorten the prompt")
        if min(prompt) < 0 or max(prompt) >= self._vocab:
            raise RequestError(f"prompt token ids must lie in [0, {self._vocab})")
        if params.stop and self.detokenize is None:
            raise RequestError("stop strings need an engine built with a detokenize callback")
        request_id = request_id or f"req-{next(self._ids)}"
        handle = RequestHandle(self, request_id, keep_deltas=sink is None)
        stop_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else self.eos_ids)
        if sink is not None:
            def deliver(delta: StreamDelta) -> None:
                handle._push(delta)  # the handle still learns the result
                sink(delta)
        else:
            deliver = handle._push
        seq = SequenceState(request_id, prompt, params, deliver, None, stop_ids,
                        submitted_at=time.monotonic())
        with self._lock:
            if self._pending >= self.max_queue:
                self.stats["refused_queue_full"] += 1
                raise EngineFullError(f"{self._pending} requests are already waiting "
                                      f"(max_queue={self.max_queue}); retry later")
            self._pending += 1
        self.stats["requests"] += 1
        self._inbox.put(seq)
        self._wake.set()
        return handle

    def cancel(self, request_id: str) -> None:
        """Stop a request (waiting or running) at the next step; it ends with 'abort'."""
        with self._lock:
            self._cancelled.add(request_id)
        self._wake.set()

    def generate(self, prompts: list[list[int]],
                 params: SamplingParams | list[SamplingParams] | None = None) -> list[Completion]:
        """Run a batch of prompts to completion (more prompts than rows join as rows free up).

        Args:
            prompts: token ids per request.
            params: one `SamplingParams` for all, or one per prompt.

        Returns:
            One `Completion` per prompt, in order.
        """
        if not isinstance(params, list):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} SamplingParams for {len(prompts)} prompts")
        handles = [self.submit(p, sp) for p, sp in zip(prompts, params)]
        return [h.result() for h in handles]

    def stream(self, prompt: list[int], params: SamplingParams | None = None, *,
               request_id: str | None = None) -> AsyncStream:
        """Submit now (errors raise here) and return an async iterator of the request's deltas;
        call from a running event loop, with the background loop started (`start()`)."""
        return AsyncStream(self, prompt, params, request_id)

    # ---- background loop ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background loop is driving steps."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Drive `step()` on a daemon thread until `shutdown()`."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="youtu-engine", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop; requests still in flight end with 'abort'."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._step_lock:
            self._abort_all("abort")

    def _abort_all(self, reason: str, error: str | None = None) -> None:
        """End every request the engine holds (running, waiting, not yet picked up)."""
        self._inflight = None
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for seq in list(self._running) + list(self._waiting):
            seq.error = error
            self._finish(seq, reason)
        self._waiting.clear()
        with self._lock:
            self._pending = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.has_work():
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - a bug here must not silently stall every client
                logger.exception("engine step failed outside a forward; failing all requests")
                with self._step_lock:
                    self._abort_all("error", f"{type(e).__name__}: {e}")

    def has_work(self) -> bool:
        return bool(self._running or self._waiting or not self._inbox.empty() or self._cancelled
                    or self._inflight is not None)

    # ---- scheduling ---------------------------------------------------------------------------

    def step(self) -> None:
        """One iteration: cancellations, admissions (prefill), one decode step for all running."""
        with self._step_lock:
            self._step()

    @torch.inference_mode()
    def _step(self) -> None:
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        if self._inflight is not None and (self._cancelled or (self._waiting and self._free_rows)):
            # Admission and cancellation act on up-to-date sequences: read the step in flight
            # first, as the engine without overlap already has. A request cancelled by now
            # keeps the tokens it had when it cancelled: its in-flight token is dropped.
            with self._lock:
                cancelled = set(self._cancelled)
            inflight, self._inflight = self._inflight, None
            self._guarded(inflight.seqs, lambda _: self._append(inflight, cancelled))
        self._apply_cancellations()
        admitted = []
        while self._waiting and self._free_rows:
            seq = self._waiting.popleft()
            seq.row = self._free_rows.pop()
            admitted.append(seq)
        if admitted:
            with self._lock:
                self._pending -= len(admitted)
            self._guarded(admitted, self._prefill)
        decoding = [s for s in self._running if s not in admitted]
        if decoding:
            self.stats["decode_steps"] += 1
            self._guarded(decoding, self._decode)
        elif self._inflight is not None:  # every sequence it holds has finished: nothing to read
            inflight, self._inflight = self._inflight, None
            self._guarded(inflight.seqs, lambda _: self._append(inflight))
        self.peak_running = max(self.peak_running, len(self._running))

    def _guarded(self, seqs: list[SequenceState], fn: Callable[[list[SequenceState]], None]) -> None:
        # A failing forward (e.g. out of memory) fails the requests in it, not the engine.
        try:
            fn(seqs)
        except Exception as e:  # noqa: BLE001 - reported to the requests, the loop keeps serving
            logger.exception("engine step failed for %d request(s)", len(seqs))
            for seq in seqs:
                if seq.finish_reason is None:
                    seq.error = f"{type(e).__name__}: {e}"
                    self._finish(seq, "error")

    def _apply_cancellations(self) -> None:
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
        if not cancelled:
            return
        for seq in [s for s in self._waiting if s.id in cancelled]:
            self._waiting.remove(seq)
            with self._lock:
                self._pending -= 1
            self._finish(seq, "abort")
        for seq in [s for s in self._running if s.id in cancelled]:
            self._finish(seq, "abort")

    def _finish(self, seq: SequenceState, reason: str, stop_reason: int | str | None = None) -> None:
        seq.finish_reason, seq.stop_reason = reason, stop_reason
        if seq.row >= 0:
            if seq in self._running:
                self._running.remove(seq)
            self._free_rows.append(seq.row)
            seq.row = -1
        self.stats[f"finished_{reason}"] += 1
        self._deliver(seq, StreamDelta([], [], finish_reason=reason, completion=seq.completion()))

    def _deliver(self, seq: SequenceState, delta: StreamDelta) -> None:
        try:
            seq.sink(delta)
        except RuntimeError:  # the consumer's event loop is gone: nobody is listening
            if seq.finish_reason is None:
                self.cancel(seq.id)

    # ---- model calls ----------------------------------------------------------------------------

    def _check_gemv(self, gemv: str) -> str:
        """The decode GEMV implementation after checking it can run here; `auto` where the
        kernels cannot run (no CUDA or triton, or unfused weights) is cuBLAS."""
        base = decode_gemv.check_implementation(gemv).removesuffix("+pdl")
        if base == "auto":
            return gemv if self.fused and decode_gemv.available(self.device) else "cublas"
        if base == "triton":
            if not decode_gemv.available(self.device):
                raise ValueError(f"gemv={gemv!r} needs a CUDA device with triton (the model is "
                                 f"on {self.device}); use gemv='cublas' there")
            if not self.fused:
                raise ValueError(f"gemv={gemv!r} reads the fused decode weights: set "
                                 "fuse_weights=True (sharded parameters cannot be fused)")
        return gemv

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.model.lm_head.weight)

    def _prefill(self, seqs: list[SequenceState]) -> None:
        """Write the prompts into their rows and sample each first token. Rows are right-padded
        to the group's longest prompt (pad tokens land in slots the row overwrites before it
        reads them) and cut into chunks of at most `prefill_chunk_tokens` tokens."""
        if self.fused and not decode_weights_fused(self.model):  # ~5 us a layer, per admission
            raise RuntimeError("the model's weights were replaced after the Engine was built (a "
                               "cast, .to(), load_state_dict(assign=True)): decode would read the "
                               "old ones; update weights in place (refresh_sampler, copy_) or "
                               "build a new Engine")
        seqs = sorted(seqs, key=lambda s: len(s.prompt))
        groups, group = [], []
        for seq in seqs:
            if group and (len(group) + 1) * len(seq.prompt) > self.prefill_chunk_tokens:
                groups.append(group)
                group = []
            group.append(seq)
        groups.append(group)
        for group in groups:
            self._prefill_group(group)

    def _prefill_group(self, seqs: list[SequenceState]) -> None:
        n, longest = len(seqs), max(len(s.prompt) for s in seqs)
        ids = torch.zeros(n, longest, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s.prompt)] = torch.tensor(s.prompt)
        ids = ids.to(self.device)
        rows = torch.tensor([s.row for s in seqs], device=self.device)
        lengths = torch.tensor([len(s.prompt) for s in seqs], device=self.device)
        chunk = max(1, min(self.prefill_chunk_tokens // n, self.prefill_row_tokens))
        last_hidden = torch.empty(n, self.model.config.hidden_size, device=self.device, dtype=self.dtype)
        scoring = [i for i, s in enumerate(seqs) if s.params.prompt_logprobs]
        for s in seqs:
            if s.params.prompt_logprobs:
                s.prompt_logprobs = [None]
        for start in range(0, longest, chunk):
            end = min(longest, start + chunk)
            pos = torch.arange(start, end, device=self.device).expand(n, end - start)
            hidden = self.model.hidden_states(ids[:, start:end], positions=pos, cache=self.cache,
                                              cache_rows=rows)  # [n, t, D]
            ends_here = (lengths - 1 >= start) & (lengths - 1 < end)
            idx = (lengths - 1 - start).clamp(0, end - start - 1)
            picked = hidden[torch.arange(n, device=self.device), idx]
            last_hidden = torch.where(ends_here[:, None], picked, last_hidden)
            for i in scoring:
                self._score_prompt(seqs[i], hidden[i], start, end)
        if self._seen is None and any(s.params.repetition_penalty != 1.0 for s in seqs):
            self._seen = torch.zeros(self.cache.max_batch, self._vocab, dtype=torch.bool, device=self.device)
        if self._seen is not None:
            self._seen[rows] = False
            for s in seqs:
                self._seen[s.row, torch.tensor(s.prompt, device=self.device)] = True
        self.stats["prompt_tokens"] += int(lengths.sum())
        ready = []
        for s in seqs:
            if s.params.max_tokens == 0:
                self._finish(s, "length")
            else:
                self._running.append(s)
                ready.append(s)
        keep = [i for i, s in enumerate(seqs) if s in ready]
        if ready:
            self._append(self._sample(ready, self._logits(last_hidden[keep]), [0] * len(ready)))

    def _score_prompt(self, seq: SequenceState, hidden: torch.Tensor, start: int, end: int) -> None:
        """Log-probs of prompt tokens start+1..end (those predicted by positions start..end-1)."""
        stop = min(end, len(seq.prompt) - 1)
        if stop <= start:
            return
        logprobs = self._logits(hidden[:stop - start]).float().log_softmax(-1)  # [t, V]
        targets = torch.tensor(seq.prompt[start + 1:stop + 1], device=self.device)
        seq.prompt_logprobs += token_logprobs(logprobs, targets).tolist()
        if seq.params.top_logprobs:
            values, ids = top_logprobs(logprobs, seq.params.top_logprobs)
            seq.prompt_top += [list(zip(i, v)) for i, v in zip(ids.tolist(), values.tolist())]

    def _decode(self, seqs: list[SequenceState]) -> None:
        """One token for every running sequence: feed its last token at its next slot. With
        overlap the previous step's tokens may still be on the device only ("pending"): they
        feed this step directly and are read back after it is launched."""
        prev, self._inflight = self._inflight, None
        try:
            pending = {id(s): j for j, s in enumerate(prev.seqs)} if prev is not None else {}
            launch, sources, known = [], [], []
            for s in seqs:
                j = pending.get(id(s))
                sampled = len(s.tokens) + (j is not None)
                if j is not None and (sampled >= s.params.max_tokens
                                      or s.length + 1 >= self.max_seq_len):
                    continue  # its pending token is its last (a limit): no step past it
                launch.append(s)
                sources.append(j)
                known.append(s.tokens[-1] if j is None else 0)
            new = self._launch(launch, sources, known, prev) if launch else None
            if prev is not None:
                self._append(prev)
            if new is not None and self.overlap:
                self._inflight = new
            elif new is not None:
                self._append(new)
        except BaseException:
            self._inflight = None
            raise

    def _launch(self, seqs: list[SequenceState], sources: list[int | None], known: list[int],
                prev: _Sampled | None) -> _Sampled:
        """Run the decode forward for `seqs` and sample: sources[i] is the index of seq i's
        input token in `prev` (on the device), or None when `known[i]` holds it."""
        n = len(seqs)
        extra = [int(j is not None) for j in sources]  # a pending token not yet in s.tokens
        lengths = [s.length + e for s, e in zip(seqs, extra)]
        if (prev is not None and prev.positions is not None
                and sources == list(range(len(prev.seqs)))):
            # The steady state (the same batch, in order): no host-to-device copy at all.
            ids, positions, rows = prev.tokens, prev.positions + 1, prev.rows
        else:
            ids = self._on_device(known)
            if prev is not None and any(extra):
                dst = [i for i, j in enumerate(sources) if j is not None]
                ids[self._on_device(dst)] = prev.tokens[self._on_device([sources[i] for i in dst])]
            positions = self._on_device([n_ - 1 for n_ in lengths])
            rows = self._on_device([s.row for s in seqs])
        if self.graphs is not None:
            logits = self.graphs.run(ids, positions, rows, max(lengths))
        elif self._stepwise:
            logits = decode_step(self.model, self.cache, ids[:, None], positions[:, None], rows,
                                 max(lengths), fused=self.fused, gemv=self.gemv)
        else:
            # The engine knows every length: the model then neither checks positions nor
            # reads max(positions) back from the device.
            self.cache.attend_len = max(lengths)
            try:
                hidden = self.model.hidden_states(ids[:, None], positions=positions[:, None],
                                                  cache=self.cache, cache_rows=rows)
            finally:
                self.cache.attend_len = None
            logits = self._logits(hidden[:, -1])
        assert logits.shape[0] == n
        step = self._sample(seqs, logits, [len(s.tokens) + e for s, e in zip(seqs, extra)], rows)
        step.positions, step.rows = positions, rows
        return step

    def _on_device(self, values: list[int]) -> torch.Tensor:
        """A long tensor on the engine's device without waiting for the GPU: a plain host to
        device copy of pageable memory synchronises the stream, which would stall the host
        behind the step in flight (the copy from pinned memory is queued instead)."""
        t = torch.tensor(values, dtype=torch.long)
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def _sample(self, seqs: list[SequenceState], logits: torch.Tensor, sampled: list[int],
                rows: torch.Tensor | None = None) -> _Sampled:
        """Sample one token per sequence on the device and queue its copy to the host.
        `sampled`: tokens each sequence has sampled before this one (seeded noise counters)."""
        key = tuple(s.id for s in seqs)
        if key != self._batch_key:
            self._batch_key, self._batch = key, SamplingBatch.from_params([s.params for s in seqs], self.device)
        batch = self._batch
        if self._seen is not None and rows is None:
            rows = self._on_device([s.row for s in seqs])
        seen = self._seen[rows] if (self._seen is not None and batch.any_penalty) else None
        n_top = max(s.params.top_logprobs for s in seqs)
        top = None
        if plain_greedy(batch) and not n_top:  # argmax and log-prob by split reductions
            tokens, chosen = greedy_pick(logits)
        else:
            logprobs = process_logits(logits, batch, seen)
            counters = self._on_device(sampled) if batch.any_seeded else None
            tokens = sample(logprobs, batch, counters, self._default_gen)
            chosen = token_logprobs(logprobs, tokens)
            top = top_logprobs(logprobs, n_top) if n_top else None
        if self._seen is not None:
            self._seen[rows, tokens] = True
        packed = torch.stack((tokens.double(), chosen.double()))
        if self.device.type != "cuda":
            return _Sampled(seqs=seqs, tokens=tokens, host=packed, top=top, ready=None)
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        if top is not None:
            top_host = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in top)
            for h, t in zip(top_host, top):
                h.copy_(t, non_blocking=True)
            top = top_host
        ready = torch.cuda.Event()
        ready.record()
        return _Sampled(seqs=seqs, tokens=tokens, host=host, top=top, ready=ready)

    def _append(self, step: _Sampled, drop: set[str] | frozenset[str] = frozenset()) -> None:
        """Read a sampled step back (its one wait on the device), append, stream, check stops.
        Sequences that finished since it was launched, or whose ids are in `drop`, discard
        their token."""
        if step.ready is not None:
            step.ready.synchronize()
        token_list, lp_list = step.host.tolist()
        top = None
        if step.top is not None:
            values, ids = step.top
            top = list(zip(ids.tolist(), values.tolist()))
        live = 0
        for i, (seq, token, lp) in enumerate(zip(step.seqs, map(int, token_list), lp_list)):
            if seq.finish_reason is not None or seq.id in drop:
                continue
            live += 1
            seq.tokens.append(token)
            seq.logprobs.append(lp)
            delta = StreamDelta([token], [lp])
            if top is not None and seq.params.top_logprobs:
                k = seq.params.top_logprobs
                seq.top.append(list(zip(top[i][0][:k], top[i][1][:k])))
                delta.top_logprobs = [seq.top[-1]]
            self._deliver(seq, delta)
            self._check_stop(seq, token)
        self._record_rate(live)

    def _check_stop(self, seq: SequenceState, token: int) -> None:
        if token in seq.stop_ids:
            self._finish(seq, "stop", None if token in self.eos_ids else token)
        elif seq.params.stop and (hit := self._stop_string(seq)) is not None:
            self._finish(seq, "stop", hit)
        elif len(seq.tokens) >= seq.params.max_tokens or seq.length >= self.max_seq_len:
            self._finish(seq, "length")

    def _stop_string(self, seq: SequenceState) -> str | None:
        assert self.detokenize is not None
        longest = max(len(s) for s in seq.params.stop)
        window = longest * _STOP_WINDOW_TOKENS_PER_CHAR + _STOP_WINDOW_SLACK
        text = self.detokenize(seq.tokens[-window:])
        hits = [(text.find(s), s) for s in seq.params.stop if s in text]
        return min(hits)[1] if hits else None

    # ---- metrics ------------------------------------------------------------------------------

    def _record_rate(self, tokens: int) -> None:
        now = time.monotonic()
        self.stats["generation_tokens"] += tokens
        self._rate.append((now, tokens))
        while self._rate and self._rate[0][0] < now - _RATE_WINDOW_S:
            self._rate.popleft()

    def metrics(self) -> dict[str, float]:
        """Counters and gauges for /metrics (requests, tokens, tokens/s, queue, cache)."""
        now = time.monotonic()
        recent = sum(n for t, n in self._rate if t >= now - _RATE_WINDOW_S)
        return {
            "requests_total": self.stats["requests"],
            "requests_refused_total": self.stats["refused_queue_full"],
            **{f"requests_{r}_total": self.stats[f"finished_{r}"]
               for r in ("stop", "length", "abort", "error")},
            "prompt_tokens_total": self.stats["prompt_tokens"],
            "generation_tokens_total": self.stats["generation_tokens"],
            "generation_tokens_per_s": recent / _RATE_WINDOW_S,
            "running": len(self._running),
            "waiting": self._pending,
            "peak_running": self.peak_running,
            "free_rows": len(self._free_rows),
            "max_batch": self.max_batch,
            "max_seq_len": self.max_seq_len,
            "cache_bytes": self.cache.nbytes,
            "cache_bytes_per_token": self.cache.bytes_per_token(),
        }


def load_engine(checkpoint: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, **kw) -> tuple[Engine, Tokenizer]:
    """Load an HF checkpoint folder (weights + tokenizer) into an `Engine`.

    Args:
        checkpoint: folder with config.json, model.safetensors and the tokenizer files.
        device, dtype: where and in which precision the weights live.
        **kw: `Engine` arguments; `max_batch` defaults to 8, `max_seq_len` to the smaller of
            4096 and the model's positions, `eos_ids` to the tokenizer's EOS.
    """
    from youtu.model.hf import load_pretrained
    from youtu.tokenizer import Tokenizer

    folder = Path(checkpoint)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json)")
    model = load_pretrained(folder, device=device, dtype=dtype)
    tok = Tokenizer.load(folder)
    kw.setdefault("max_batch", 8)
    limit = model.config.max_position_embeddings
    kw.setdefault("max_seq_len", min(4096, limit))
    if kw["max_seq_len"] > limit:
        logger.warning("max_seq_len=%d exceeds the model's %d positions; using %d",
                       kw["max_seq_len"], limit, limit)
        kw["max_seq_len"] = limit
    kw.setdefault("eos_ids", [tok.eos_id])
    kw.setdefault("detokenize", tok.decode)
    return Engine(model, **kw), tok


def resolve_checkpoint(checkpoint: str, run_dir: Path) -> Path:
    """`checkpoint`, or when empty the newest complete model folder under `run_dir`
    (youtu.model.checkpoints' rule). Raises FileNotFoundError naming what to pass."""
    if checkpoint:
        return Path(checkpoint)
    from youtu.model.checkpoints import latest_checkpoint  # the one finder (train, eval)

    found = latest_checkpoint(run_dir, recursive=True)
    if found is None:
        raise FileNotFoundError(f"no checkpoint given and none found under {run_dir}; pass one: "
                                f"youtu serve <checkpoint> (or --serve.checkpoint=...)")
    return found


def engine_from_config(s: ServeConfig, *, run_dir: str | Path, device: str = "auto",
                       seed: int = 0) -> tuple[Engine, Tokenizer]:
    """The engine `youtu serve` / `chat` / `agent` use: the `[serve]` section, on `device`,
    sampling from `seed`; `serve.checkpoint` empty = the newest checkpoint under `run_dir`."""
    device = resolve_device(device)
    dtype_name = s.dtype if s.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    folder = resolve_checkpoint(s.checkpoint, run_dir)
    graphs = s.use_cuda_graph and device.type == "cuda"  # the setting is ignored on the CPU
    logger.info("loading %s on %s (%s)", folder, device, dtype_name)
    if device.type == "cpu" and (Path(folder) / "config.json").is_file():
        # serve.cpu_threads: with the default threads tiny-model decode ran 30x slower
        from youtu.model.hf import read_config
        from youtu.model.transformer import YoutuForCausalLM

        with torch.device("meta"):  # parameter count without allocating the weights
            threads = s.threads_for(YoutuForCausalLM(read_config(folder)).num_params())
        if threads:
            torch.set_num_threads(threads)
    return load_engine(folder, device=device, dtype=getattr(torch, dtype_name),
                       max_batch=s.max_batch, max_seq_len=s.max_seq_len,
                       cache_memory_bytes=s.cache_memory_mb * 2**20, max_queue=s.max_queue,
                       prefill_chunk_tokens=s.prefill_chunk_tokens,
                       use_cuda_graph=graphs, compile=graphs and s.compile_decode, seed=seed,
                       fuse_weights=s.fuse_decode_weights,
                       overlap=s.overlap_decode and device.type == "cuda",
                       gemv=s.decode_gemv if device.type == "cuda" else "cublas")
