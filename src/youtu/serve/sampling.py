"""Sampling as pure functions: logits -> processed log-probs -> token ids (gpt-fast style).

    params = SamplingParams(temperature=0.7, top_p=0.95, seed=1)
    batch = SamplingBatch.from_params([params], device="cpu")
    logprobs = process_logits(logits, batch, seen)          # [B, V]
    tokens = sample(logprobs, batch, counters=torch.zeros(1, dtype=torch.long))

Every function works on a batch of rows with per-row settings (a continuous batch mixes
requests with different parameters), takes its inputs as arguments and returns new tensors.
The order is the one transformers and vLLM use: repetition penalty -> temperature -> top-k ->
top-p -> min-p. Greedy rows (temperature 0) take the argmax of the penalised logits; their
reported log-prob is under the penalised distribution at temperature 1 (a point mass would
report 0 for every token and tell the caller nothing).

Shapes: B = rows in the batch, V = vocabulary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

NEG_INF = float("-inf")
# Seeds are hashed as 32-bit words (a request's seed is taken modulo 2**32).
SEED_MODULUS = 2**32
_MASK32 = 0xFFFFFFFF
# Most chunks `greedy_pick` cuts a row into: a reduction over a whole 128k-vocabulary row runs
# on one SM (an H100's batch-1 step: log_softmax 29.4 us + argmax 28.0 us,
# bench/results/2026-12-07_h100_decode_kernels.md); 256 chunks of 501 spread it out.
GREEDY_MAX_CHUNKS = 256


@dataclass(kw_only=True)
class SamplingParams:
    """How one request is decoded (the OpenAI / vLLM parameter set)."""

    temperature: float = 1.0
    """Softmax temperature; 0 = greedy (argmax)."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 = off."""
    top_p: float = 1.0
    """Nucleus: keep the smallest set of tokens holding this much probability; 1 = off."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p times the most likely one; 0 = off."""
    repetition_penalty: float = 1.0
    """CTRL-style penalty on tokens already in the prompt or output (>1 discourages); 1 = off."""
    max_tokens: int = 256
    """Most tokens to generate (the context limit may stop it earlier); 0 = score the prompt only."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Extra token ids that end the generation (the engine's EOS ids always do)."""
    stop: list[str] = field(default_factory=list)
    """Stop strings (need the engine's detokenize callback); the text is cut before them."""
    ignore_eos: bool = False
    """Keep generating past EOS (benchmarks)."""
    seed: int | None = None
    """Per-request RNG seed: the same seed gives the same tokens whatever else is batched."""
    top_logprobs: int = 0
    """Also return this many most likely alternatives (with log-probs) per position."""
    prompt_logprobs: bool = False
    """Also return the log-prob of every prompt token given the tokens before it (raw model)."""

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_tokens}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class SamplingBatch:
    """Per-row sampling settings of one decode step as tensors (built once per batch change)."""

    temperature: torch.Tensor
    """[B] float; greedy rows hold 1.0 (they take the argmax of the penalised logits)."""
    top_k: torch.Tensor
    """[B] long; 0 = off."""
    top_p: torch.Tensor
    """[B] float; 1 = off."""
    min_p: torch.Tensor
    """[B] float; 0 = off."""
    repetition_penalty: torch.Tensor
    """[B] float; 1 = off."""
    greedy: torch.Tensor
    """[B] bool."""
    seeds: torch.Tensor
    """[B] long request seeds; -1 = unseeded (noise from the engine's shared generator)."""
    all_greedy: bool
    any_seeded: bool
    any_top_k_top_p: bool
    any_min_p: bool
    any_penalty: bool
    any_temperature: bool

    @classmethod
    def from_params(cls, params: list[SamplingParams], device: torch.device | str) -> SamplingBatch:
        """Stack per-request parameters; greedy rows get neutral filters (see module doc)."""
        greedy = [p.greedy for p in params]
        temp = [1.0 if g else p.temperature for p, g in zip(params, greedy)]
        top_k = [0 if g else p.top_k for p, g in zip(params, greedy)]
        top_p = [1.0 if g else p.top_p for p, g in zip(params, greedy)]
        min_p = [0.0 if g else p.min_p for p, g in zip(params, greedy)]
        penalty = [p.repetition_penalty for p in params]
        seeds = [-1 if p.seed is None else p.seed % SEED_MODULUS for p in params]

        device = torch.device(device)

        def put(xs, dtype):
            # A plain copy of pageable host memory to the GPU synchronises the stream: with the
            # engine's overlap a step is then in flight, and the host would wait for it.
            t = torch.tensor(xs, dtype=dtype)
            if device.type != "cuda":
                return t.to(device)
            return t.pin_memory().to(device, non_blocking=True)

        return cls(
            temperature=put(temp, torch.float32),
            top_k=put(top_k, torch.long),
            top_p=put(top_p, torch.float32),
            min_p=put(min_p, torch.float32),
            repetition_penalty=put(penalty, torch.float32),
            greedy=put(greedy, torch.bool),
            seeds=put(seeds, torch.long),
            all_greedy=all(greedy),
            any_seeded=any(s >= 0 and not g for s, g in zip(seeds, greedy)),
            any_top_k_top_p=any(k > 0 for k in top_k) or any(p < 1.0 for p in top_p),
            any_min_p=any(m > 0 for m in min_p),
            any_penalty=any(r != 1.0 for r in penalty),
            any_temperature=any(t != 1.0 for t in temp),
        )


# ---------------------------------------------------------------------------------------------
# logits processors: [B, V] float32 -> [B, V] float32


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor,
                             penalty: torch.Tensor) -> torch.Tensor:
    """CTRL penalty (Keskar et al. 2019, as in transformers): on tokens already seen, divide
    positive logits by `penalty` and multiply negative ones. `seen` [B, V] bool, `penalty` [B]."""
    p = penalty[:, None]
    penalised = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Divide each row by its temperature ([B], > 0)."""
    return logits / temperature[:, None]


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask to -inf everything outside each row's top-k, then outside its top-p nucleus (on the
    top-k-renormalised distribution). The most likely token always survives. One sort for both."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[-1], device=logits.device)
    drop = (top_k[:, None] > 0) & (rank[None, :] >= top_k[:, None])
    sorted_logits = sorted_logits.masked_fill(drop, NEG_INF)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    drop = drop | (mass_before >= top_p[:, None])
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, NEG_INF)
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drop tokens whose probability is below min_p x the row's top probability (Nguyen et al.
    2024); compared in log space: logit - max_logit < log(min_p)."""
    gap = logits - logits.max(dim=-1, keepdim=True).values
    threshold = torch.log(min_p.clamp_min(1e-30))[:, None]
    drop = (min_p[:, None] > 0) & (gap < threshold)
    return logits.masked_fill(drop, NEG_INF)


def process_logits(logits: torch.Tensor, batch: SamplingBatch,
                   seen: torch.Tensor | None = None) -> torch.Tensor:
    """Raw logits [B, V] -> log-probs [B, V] of the distribution each row samples from.

    Args:
        logits: next-token logits (any float dtype; computed in float32).
        batch: per-row settings.
        seen: [B, V] bool, tokens already in each row's prompt or output (repetition penalty).
    """
    logits = logits.float()
    if batch.any_penalty:
        assert seen is not None, "repetition penalty needs the seen-token mask"
        logits = apply_repetition_penalty(logits, seen, batch.repetition_penalty)
    if batch.any_temperature:
        logits = apply_temperature(logits, batch.temperature)
    if batch.any_top_k_top_p:
        logits = apply_top_k_top_p(logits, batch.top_k, batch.top_p)
    if batch.any_min_p:
        logits = apply_min_p(logits, batch.min_p)
    return logits.log_softmax(dim=-1)


# ---------------------------------------------------------------------------------------------
# sampling


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) held in int64, without int64 overflow: the 32-bit
    constant is split into 16-bit halves (x * half < 2**48)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (Wellons' lowbias32: full avalanche, bias ~1.7e-4)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def seeded_exponential(seeds: torch.Tensor, counters: torch.Tensor, vocab: int) -> torch.Tensor:
    """Exp(1) noise [B, V] that is a pure function of (seed, counter, token id).

    A counter-based generator (as Philox is, in the spirit of Salmon et al. 2011): row b's noise
    at its counters[b]-th sampled token depends on nothing else, so a seeded request draws the
    same tokens whatever shares its batch, and all seeded rows of a step take one vectorised
    pass instead of one RNG kernel per row.

    Args:
        seeds: [B] long in [0, 2**32).
        counters: [B] long, tokens the row has sampled so far.
        vocab: V.
    """
    row = _mix32(_mix32(seeds & _MASK32) ^ (counters & _MASK32))  # [B]
    tok = torch.arange(vocab, device=seeds.device, dtype=torch.long)
    bits = _mix32(_mix32((row[:, None] + tok * 0x9E3779B9) & _MASK32) ^ row[:, None])  # [B, V]
    u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 2**24)  # (0, 1), 24 bits
    return -torch.log(u)


def sample(logprobs: torch.Tensor, batch: SamplingBatch, counters: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from `logprobs` [B, V]; greedy rows take the argmax.

    Sampling is the exponential race argmax(p / E), E ~ Exp(1) i.i.d. (equivalent to a
    categorical draw, no host sync). Seeded rows (`batch.seeds` >= 0) take their noise from
    `seeded_exponential` at `counters` ([B] long: tokens each row has sampled so far), so a
    seeded request is reproducible whatever else shares the batch; the others share
    `generator`. One noise kernel for the unseeded rows, one vectorised pass for the seeded.

    Returns:
        [B] long token ids.
    """
    argmax = logprobs.argmax(dim=-1)
    if batch.all_greedy:
        return argmax
    noise = torch.empty_like(logprobs).exponential_(generator=generator)
    if batch.any_seeded:
        if counters is None:
            raise ValueError("seeded rows need counters (tokens sampled so far per row)")
        seeded = seeded_exponential(batch.seeds.clamp_min(0), counters, logprobs.shape[-1])
        noise = torch.where((batch.seeds >= 0)[:, None], seeded, noise)
    drawn = (logprobs.exp() / noise).argmax(dim=-1)
    return torch.where(batch.greedy, argmax, drawn)


def plain_greedy(batch: SamplingBatch) -> bool:
    """Whether every row's token and log-prob come from the raw logits alone: all rows greedy
    (`from_params` gives them neutral temperature and filters) and none penalised.
    `greedy_pick` then gives what process_logits + sample + token_logprobs would, without the
    [B, V] log-softmax."""
    return batch.all_greedy and not batch.any_penalty


@functools.cache
def greedy_chunks(vocab: int, most: int = GREEDY_MAX_CHUNKS) -> int:
    """The most chunks, up to `most`, that cut a row of `vocab` evenly (1 for a prime)."""
    return max(k for k in range(1, min(most, vocab) + 1) if vocab % k == 0)


def greedy_pick(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's argmax (the first on ties, as `torch.argmax`) and its log-prob under the
    row's softmax, from logits [B, V] (computed in float32) by reductions over
    `greedy_chunks(V)` chunks per row and then over the chunks, so a batch-1 row's work is
    spread over many programs. Returns ([B] long tokens, [B] float32 log-probs)."""
    x = logits.float()
    B, V = x.shape
    k = greedy_chunks(V)
    parts = x.reshape(B, k, V // k)
    best, where = parts.max(dim=-1)  # [B, k]: each chunk's first maximum
    chunk = best.argmax(dim=-1, keepdim=True)  # [B, 1]: the first chunk holding the row's max
    tokens = chunk * (V // k) + where.gather(-1, chunk)
    lse = torch.logsumexp(torch.logsumexp(parts, dim=-1), dim=-1)  # [B]
    return tokens.squeeze(-1), best.gather(-1, chunk).squeeze(-1) - lse


def token_logprobs(logprobs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-prob of each row's chosen token: [B, V], [B] -> [B]."""
    return logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def top_logprobs(logprobs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n most likely tokens per row: ([B, n] log-probs, [B, n] ids)."""
    values, ids = logprobs.topk(n, dim=-1)
    return values, ids
