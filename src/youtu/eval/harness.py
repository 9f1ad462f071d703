"""Evaluation harness: batched log-likelihoods, rolling log-likelihood (perplexity, bits per byte)
and generate-until, over three backends that all look the same to the tasks.

    lm = load_lm("runs/tiny/sft")                               # our checkpoint (youtu backend)
    lm = load_lm("/models/Qwen3-1.7B-Base", backend="hf")        # any Hugging Face model folder
    lm = load_lm("Qwen3-1.7B-Base", backend="openai", base_url="http://127.0.0.1:8000/v1")
    lm.loglikelihood([("The capital of France is", " Paris")])   # [Loglikelihood(-1.2, True, 1)]
    lm.loglikelihood_rolling(["some held-out text"])[0].bits_per_byte
    lm.generate_until([GenerationRequest("Q: 2+2=\nA:", max_new_tokens=8, until=("\n",))])

Continuation boundaries follow lm-evaluation-harness: trailing whitespace of the context moves
to the continuation, `context + continuation` and `context` are encoded separately and the
continuation tokens are the tail of the whole encoding beyond the context's length, so a merge
across the boundary (" Paris" as one token) is scored the way the model would produce it. Every
scored sequence starts with BOS (the documents the model was trained on do). Rolling windows are
lm-eval's disjoint ones: each token is predicted once, with up to `max_length` tokens of context.

The local backends batch by length (longest first), right-pad (causal attention never looks
right, so padding needs no mask for our model) and project only the positions that are scored
onto the vocabulary. Our checkpoints score with the latent KV cache (`youtu.model.LatentCache`)
and generate through the serving engine (`youtu.serve.engine.Engine`: the one decoder every
consumer uses, with its CUDA graphs and fused decode attention on GPU); HF models use `generate`; the endpoint backend speaks the OpenAI completions API over httpx.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

Backend = Literal["youtu", "hf", "openai"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Loglikelihood:
    """Log-probability of a continuation given a context."""

    logprob: float
    """Sum of the continuation tokens' log-probabilities (nats)."""
    is_greedy: bool
    """Whether greedy decoding from the context produces exactly these tokens."""
    num_tokens: int
    """Continuation length in tokens."""


@dataclass(frozen=True)
class RollingLoglikelihood:
    """Log-probability of a whole text (every token predicted once)."""

    logprob: float
    """Sum over all tokens (nats)."""
    num_tokens: int
    """Tokens scored."""
    num_bytes: int
    """UTF-8 bytes of the text: the tokenizer-independent denominator."""

    @property
    def bits_per_byte(self) -> float:
        """-log2 p(text) / bytes: comparable across tokenizers."""
        return -self.logprob / (math.log(2) * max(self.num_bytes, 1))

    @property
    def perplexity(self) -> float:
        """Token-level perplexity (depends on the tokenizer)."""
        return math.exp(-self.logprob / max(self.num_tokens, 1))


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to continue."""

    prompt: str
    max_new_tokens: int
    """Generation budget in tokens."""
    until: tuple[str, ...] = ()
    """Stop strings: the text is cut before the first one (it is not returned)."""
    temperature: float = 0.0
    """0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass (only with temperature > 0)."""
    seed: int = 0
    """Sampling seed (only with temperature > 0)."""
    first_line_only: bool = False
    """The caller reads only the first non-blank line: local backends may stop generating once
    the text holds a newline after non-space content. The text is not cut (unlike `until`), so
    the result is the same as generating the whole budget and keeping the first line."""


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """`text` up to (excluding) the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in until if s) if i >= 0), default=len(text))
    return text[:cut]


class LM:
    """What every task sees: a model with loglikelihood / rolling / generate-until.

    Subclasses implement the methods their backend supports; the others raise
    NotImplementedError naming the backend.
    """

    name: str = "lm"
    """Label for logs and results (the checkpoint folder or model name)."""
    max_length: int = 2048
    """Longest sequence (prompt + generation) the model handles, in tokens."""
    adds_bos: bool = False
    """The backend starts every sequence with BOS itself: texts must not carry its text."""

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        """Score each (context, continuation) pair."""
        raise NotImplementedError(f"{type(self).__name__} does not compute log-likelihoods")

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingLoglikelihood]:
        """Score each whole text, windowed over `max_length`."""
        raise NotImplementedError(f"{type(self).__name__} does not compute log-likelihoods")

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Continue each prompt (text only, stop strings removed)."""
        raise NotImplementedError(f"{type(self).__name__} does not generate")

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int, bool]:
        """Keep the first and last `max_tokens // 2` tokens of a longer text (APTBench's rule).

        Returns:
            (text, its length in tokens, whether it was cut). Backends without a tokenizer
            return the text unchanged with length -1.
        """
        return text, -1, False


# ---------------------------------------------------------------------------------------------
# token-level backends (our checkpoints, HF folders)


class _Codec:
    """The few tokenizer operations the harness needs, over our Tokenizer or an HF one."""

    def __init__(self, tok: Any, kind: Literal["youtu", "hf"]):
        self.tok, self.kind = tok, kind
        if kind == "youtu":
            self.bos_id, self.eos_id, self.pad_id = tok.bos_id, tok.eos_id, tok.pad_id
        else:
            self.bos_id, self.eos_id = tok.bos_token_id, tok.eos_token_id
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        # Special-token text (e.g. `<tool_call>`) maps to its id, as HF tokenizers and vLLM do.
        if self.kind == "youtu":
            return self.tok.encode(text, allow_special=True)
        return self.tok.encode(text, add_special_tokens=False)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, in one call that the Rust tokenizer runs in parallel."""
        if not texts:
            return []
        if self.kind == "youtu":
            return self.tok.encode_batch(texts, allow_special=True)
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        if self.kind == "youtu":
            return self.tok.decode(ids, skip_special=True)
        return self.tok.decode(ids, skip_special_tokens=True)


class TokenLM(LM):
    """Shared logic of the local backends: encoding, boundaries, batching, windows, decoding.

    Subclasses provide `_score_logits(input_ids, lo, hi)` (log-softmax at positions lo..hi-1 of
    a right-padded batch) and `_generate_ids(prompts, requests, stop)`.
    """

    def __init__(self, codec: _Codec, *, device: torch.device, batch_size: int, max_length: int,
                 name: str, add_bos: bool = True, max_batch_tokens: int = 131072):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.codec, self.device, self.batch_size = codec, device, batch_size
        self.max_batch_tokens = max_batch_tokens
        """Rows x padded length per forward (and per KV cache): long prompts get smaller
        batches (2B, bf16: 131k cached tokens = 4.7 GB of latent cache)."""
        self.max_length, self.name = max_length, name
        self.prefix_id = codec.bos_id if codec.bos_id is not None else codec.eos_id
        """Conditions empty contexts and the first rolling window (lm-eval's prefix token)."""
        self.head = [self.prefix_id] if add_bos and codec.bos_id is not None else []
        """Starts every scored or prompted sequence: BOS when the model was trained with it."""
        self.adds_bos = bool(self.head)
        self.timing: collections.Counter = collections.Counter()
        """Where the time goes: generate_s / score_s and their request counts, plus the
        engine's decode steps, prompt tokens and CUDA-graph captures (the eval runner logs the
        change per task group)."""

    @contextlib.contextmanager
    def _timed(self, seconds_key: str, count_key: str, count: int):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timing[seconds_key] += time.perf_counter() - start
            self.timing[count_key] += count

    # -- tokens -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Text -> token ids (no BOS)."""
        return self.codec.encode(text)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, in one parallel tokenizer call."""
        return self.codec.encode_many(texts)

    def decode(self, ids: list[int]) -> str:
        """Token ids -> text (special tokens dropped)."""
        return self.codec.decode(ids)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int, bool]:
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text, len(ids), False
        half = max_tokens // 2
        ids = ids[:half] + ids[len(ids) - half:]
        return self.decode(ids), len(ids), True

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(BOS + context tokens, continuation tokens) with lm-eval's boundary rule (trailing
        spaces of the context move to the continuation; the continuation's tokens are those
        of context + continuation after the context's); without BOS an empty context becomes
        the prefix token."""
        return self.encode_pairs([(context, continuation)])[0]

    def encode_pairs(self, requests: Sequence[tuple[str, str]]
                     ) -> list[tuple[list[int], list[int]]]:
        """`encode_pair` of each (context, continuation), all texts in one tokenizer call."""
        split = []
        for context, continuation in requests:
            n_space = len(context) - len(context.rstrip())
            if n_space:
                context, continuation = context[:-n_space], context[-n_space:] + continuation
            split.append((context, continuation))
        ids = self.codec.encode_many([c + x for c, x in split] + [c for c, _ in split])
        wholes, contexts = ids[:len(split)], ids[len(split):]
        return [((self.head + ctx) or [self.prefix_id], whole[len(ctx):])
                for whole, ctx in zip(wholes, contexts)]

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped longest first, at most `batch_size` rows and `max_batch_tokens`
        padded tokens per group (a longer single row still gets its own group)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            g = groups[-1] if groups else None
            if (g and len(g) < self.batch_size
                    and (len(g) + 1) * lengths[g[0]] <= self.max_batch_tokens):
                g.append(i)
            else:
                groups.append([i])
        return groups

    # -- scoring ----------------------------------------------------------------------------

    def _score_logits(self, input_ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Log-softmax [B, hi - lo, V] (fp32) at positions lo..hi-1 of a right-padded batch."""
        raise NotImplementedError

    def _score_shared(self, groups: list[tuple[list[int], list[list[int]]]]
                      ) -> list[list[tuple[float, bool]]] | None:
        """(sum log p, greedy?) of several continuations of each shared context, computing the
        context once; None = not supported by this backend (every pair is scored whole)."""
        return None

    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]
                     ) -> list[tuple[float, bool]]:
        """(sum log p(cont | ctx), greedy?) per pair of token lists; the context is cut from the
        left so that the scored sequence fits `max_length`. Pairs sharing a context (multiple
        choice) that fit uncut go through `_score_shared` when the backend has it."""
        with self._timed("score_s", "scored_pairs", len(pairs)):
            return self._score_tokens(pairs)

    @torch.no_grad()
    def _score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]
                      ) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        for ctx, cont in pairs:
            if not ctx:
                raise ValueError("score_tokens needs a non-empty context (at least BOS)")
            if len(cont) > self.max_length:
                raise ValueError(f"continuation of {len(cont)} tokens exceeds max_length "
                                 f"{self.max_length}")
        shared: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            if cont and len(ctx) + len(cont) <= self.max_length + 1:
                shared.setdefault(tuple(ctx), []).append(i)
        groups = [idx for idx in shared.values() if len(idx) > 1]
        scored = self._score_shared([(pairs[idx[0]][0], [pairs[i][1] for i in idx])
                                     for idx in groups]) if groups else None
        if scored is not None:
            for idx, res in zip(groups, scored):
                for i, r in zip(idx, res):
                    out[i] = r
        todo = [i for i in range(len(pairs)) if out[i] is None]
        seqs = [(pairs[i][0] + pairs[i][1])[-(self.max_length + 1):] for i in todo]
        for batch_rows in _progress(self._batches([len(s) for s in seqs]), "scoring"):
            rows = [todo[j] for j in batch_rows]
            inputs = [seqs[j][:-1] for j in batch_rows]
            width = max(len(x) for x in inputs)
            batch = torch.full((len(rows), width), self.codec.pad_id, dtype=torch.long)
            for r, ids in enumerate(inputs):
                batch[r, :len(ids)] = torch.tensor(ids)
            # Positions predicting the continuation of row r: len(input) - k .. len(input) - 1.
            spans = [(len(inputs[r]) - len(pairs[i][1]), len(inputs[r]))
                     for r, i in enumerate(rows)]
            lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
            if hi == lo:  # every continuation in this batch is empty
                for i in rows:
                    out[i] = (0.0, True)
                continue
            logp = self._score_logits(batch.to(self.device), lo, hi)
            for r, i in enumerate(rows):
                s, e = spans[r]
                cont = torch.tensor(pairs[i][1], device=logp.device)
                rows_logp = logp[r, s - lo:e - lo]
                total = rows_logp.gather(-1, cont[:, None]).sum().item()
                greedy = bool((rows_logp.argmax(-1) == cont).all().item())
                out[i] = (total, greedy)
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        pairs = self.encode_pairs(requests)
        scores = self.score_tokens(pairs)
        return [Loglikelihood(lp, g, len(p[1])) for (lp, g), p in zip(scores, pairs)]

    def rolling_windows(self, ids: list[int]) -> list[tuple[list[int], list[int]]]:
        """lm-eval's disjoint windows: (context, predicted tokens) covering every token once;
        the first window is conditioned on BOS, later ones on the `max_length` tokens before."""
        windows, done = [], 0
        while done < len(ids):
            end = min(done + self.max_length, len(ids))
            # score_tokens keeps the last max_length + 1 - (end - done) context tokens: BOS only
            # survives for the first window.
            ctx = [self.prefix_id] + ids[max(0, done - self.max_length):done]
            windows.append((ctx, ids[done:end]))
            done = end
        return windows

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingLoglikelihood]:
        encoded = [self.encode(t) for t in texts]
        windows, owner = [], []
        for i, ids in enumerate(encoded):
            for w in self.rolling_windows(ids):
                windows.append(w)
                owner.append(i)
        sums = [0.0] * len(texts)
        for i, (lp, _) in zip(owner, self.score_tokens(windows)):
            sums[i] += lp
        return [RollingLoglikelihood(sums[i], len(encoded[i]), len(t.encode("utf-8")))
                for i, t in enumerate(texts)]

    # -- generation -------------------------------------------------------------------------

    def _generate_ids(self, prompts: list[list[int]], requests: Sequence[GenerationRequest],
                      stop: Callable[[int, list[int], int], bool]) -> list[list[int]]:
        raise NotImplementedError

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        with self._timed("generate_s", "generated_requests", len(requests)):
            return self._generate_until(requests)

    @torch.no_grad()
    def _generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        out: list[str] = [""] * len(requests)
        prompts = []
        for req in requests:
            budget = self.max_length - req.max_new_tokens
            if budget < 1:
                raise ValueError(f"max_new_tokens {req.max_new_tokens} leaves no room for a "
                                 f"prompt in max_length {self.max_length}")
            ids = (self.head + self.encode(req.prompt)) or [self.prefix_id]
            prompts.append(ids[-budget:])  # keep the end: it holds the question being asked
        batches = self._batches([len(p) + r.max_new_tokens for p, r in zip(prompts, requests)])
        for rows in _progress(batches, "generating"):
            reqs = [requests[i] for i in rows]

            def stop(r: int, new: list[int], checked: int = 0,
                     reqs: list[GenerationRequest] = reqs) -> bool:
                return reqs[r].first_line_only and self._ends_first_line(new, checked)

            gen = self._generate_ids([prompts[i] for i in rows], reqs, stop)
            for r, i in enumerate(rows):
                ids = gen[r]
                if self.codec.eos_id in ids:
                    ids = ids[:ids.index(self.codec.eos_id)]
                out[i] = cut_at_stop(self.decode(ids), requests[i].until)
        return out

    def _ends_first_line(self, new: list[int], checked: int) -> bool:
        """Whether the text of `new` (the tokens generated so far; the first `checked` were
        seen before without ending it) has a line break after text. Only the new tokens are
        decoded unless they hold one: decoding every row's whole text at every step cost ~25
        us a row (64 rows: ~1.6 ms a step)."""
        return "\n" in self.decode(new[checked:]) and "\n" in self.decode(new).lstrip()


def _progress(batches: list[list[int]], desc: str):
    """A progress bar with ETA over the batches of one request list (on a terminal only, and
    only for lists of several batches)."""
    return tqdm(batches, desc=desc, unit="batch", leave=False,
                disable=None if len(batches) > 1 else True)


ENGINE_TIMING = ("decode_steps", "prompt_tokens", "generation_tokens", "graph_captures",
                 "graph_capture_ms")
"""Engine counters added to `TokenLM.timing` by generation through the engine."""


class CheckpointLM(TokenLM):
    """Our checkpoints: `youtu.model.hf.load_pretrained` + `youtu.tokenizer.Tokenizer.load`,
    decoding with the latent KV cache."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8, max_length: int = 0, add_bos: bool | None = None,
                 max_batch_tokens: int = 131072, compile_decode: bool = False):
        from youtu.model.hf import load_pretrained
        from youtu.tokenizer import Tokenizer

        self.compile_decode = compile_decode
        """torch.compile the engine's CUDA-graph decode step (CUDA only; `eval.compile_decode`)."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is not a checkpoint folder (no config.json); pass a "
                             "folder written by `youtu train`/`youtu sft` or `save_pretrained`")
        self.model = load_pretrained(folder, device=device, dtype=DTYPES[dtype]).eval()
        self._engine = None
        self._request_ids = itertools.count()
        cfg = self.model.config
        super().__init__(_Codec(Tokenizer.load(folder), "youtu"), device=torch.device(device),
                         batch_size=batch_size,
                         max_length=max_length or cfg.max_position_embeddings, name=str(folder),
                         add_bos=add_bos is not False,  # data prep starts documents with BOS
                         max_batch_tokens=max_batch_tokens)

    def _score_logits(self, input_ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        hidden = self.model.hidden_states(input_ids)[:, lo:hi]
        logits = hidden @ self.model.lm_head.weight.T
        return torch.log_softmax(logits.float(), dim=-1)

    def _score_shared(self, groups: list[tuple[list[int], list[list[int]]]]
                      ) -> list[list[tuple[float, bool]]]:
        """Each context is prefilled once into a latent cache row, the row is copied to one row
        per continuation, and all continuations run as one cached batch: a 4-way multiple
        choice over a 1k-token context costs ~1k + 4 x (candidate) tokens instead of 4k."""
        out: list[list[tuple[float, bool]]] = [[] for _ in groups]
        chunks: list[list[int]] = []
        for g in sorted(range(len(groups)), key=lambda g: -len(groups[g][0])):
            chunk = chunks[-1] if chunks else []
            rows = sum(len(groups[h][1]) for h in chunk + [g])
            slots = len(groups[(chunk or [g])[0]][0]) + max(len(c) for h in chunk + [g]
                                                           for c in groups[h][1])
            if chunk and len(chunk) < self.batch_size and rows * slots <= self.max_batch_tokens:
                chunk.append(g)
            else:
                chunks.append([g])
        for chunk in chunks:
            for g, res in zip(chunk, self._score_shared_chunk([groups[g] for g in chunk])):
                out[g] = res
        return out

    def _score_shared_chunk(self, groups: list[tuple[list[int], list[list[int]]]]
                            ) -> list[list[tuple[float, bool]]]:
        from youtu.model import LatentCache

        dev, n_rows = self.device, sum(len(cs) for _, cs in groups)
        # the contexts are right-padded to the longest; pad slots are never attended (each
        # continuation row writes its own slots before it reads them)
        width = max(len(ctx) for ctx, _ in groups) - 1
        cache = LatentCache(self.model.config, max_batch=n_rows,
                            max_seq_len=width + 1 + max(len(c) for _, cs in groups for c in cs),
                            device=dev, dtype=next(self.model.parameters()).dtype)
        starts = [sum(len(cs) for _, cs in groups[:k]) for k in range(len(groups))]
        # prefill ctx[:-1] into the first row of each group's block, then copy it to the block
        if width > 0:
            x = torch.full((len(groups), width), self.codec.pad_id, dtype=torch.long)
            for k, (ctx, _) in enumerate(groups):
                x[k, :len(ctx) - 1] = torch.tensor(ctx[:-1])
            self.model.hidden_states(x.to(dev), cache=cache,
                                     positions=torch.arange(width, device=dev).expand_as(x),
                                     cache_rows=torch.tensor(starts, device=dev))
            for k, (ctx, cs) in enumerate(groups):
                block = cache.kv[:, starts[k]:starts[k] + len(cs), :len(ctx) - 1]
                block[:, 1:] = block[:, :1]
        # each row: the context's last token then the continuation but its last, at positions
        # len(ctx) - 1 ...: every prediction of the continuation comes from this forward. Rows
        # of similar length go together: a padded query attends to the whole cached context.
        rows = [(len(ctx) - 1, [ctx[-1]] + c[:-1], c) for ctx, cs in groups for c in cs]
        results: list[tuple[float, bool]] = [(0.0, True)] * n_rows
        for batch in self._batches([len(ids) for _, ids, _ in rows]):
            length = max(len(rows[r][1]) for r in batch)
            x = torch.full((len(batch), length), self.codec.pad_id, dtype=torch.long)
            for b, r in enumerate(batch):
                x[b, :len(rows[r][1])] = torch.tensor(rows[r][1])
            pos = torch.tensor([rows[r][0] for r in batch])[:, None] + torch.arange(length)[None]
            hidden = self.model.hidden_states(x.to(dev), positions=pos.to(dev), cache=cache,
                                              cache_rows=torch.tensor(batch, device=dev))
            # logits at the scored positions only: [sum of lengths, V], not [B, T, V]
            lengths = [len(rows[r][2]) for r in batch]
            picked = torch.cat([hidden[b, :n] for b, n in enumerate(lengths)])
            logp = torch.log_softmax((picked @ self.model.lm_head.weight.T).float(), dim=-1)
            target = torch.tensor([t for r in batch for t in rows[r][2]], device=logp.device)
            token_logp = logp.gather(-1, target[:, None])[:, 0].split(lengths)
            hits = (logp.argmax(-1) == target).split(lengths)
            for r, lp, hit in zip(batch, token_logp, hits):
                results[r] = (lp.sum().item(), bool(hit.all().item()))
        return [results[s:s + len(cs)] for s, (_, cs) in zip(starts, groups)]

    def _engine_for(self, rows: int, seq_len: int):
        """The engine generation runs on, rebuilt only when a batch needs more context than
        it has (the context doubles, up to the model's positions): its cache holds at most
        `max_batch_tokens` tokens, and on CUDA its graphs are captured once per size."""
        from youtu.serve.engine import Engine

        limit = self.model.config.max_position_embeddings
        if seq_len > limit:
            raise ValueError(f"prompt + max_new_tokens = {seq_len} tokens exceeds the model's "
                             f"{limit} positions; lower max_length or max_new_tokens")
        engine = self._engine
        if engine is None or engine.max_seq_len < seq_len or engine.max_batch < min(
                rows, self.batch_size, max(1, self.max_batch_tokens // engine.max_seq_len)):
            size = min(limit, max(64, 1 << (seq_len - 1).bit_length()))
            self._engine = None  # free the old cache before allocating the new one
            n_rows = max(1, min(self.batch_size, self.max_batch_tokens // size))
            prefill_tokens = max(2048, self.max_batch_tokens // 4)
            # compile None: the engine's default, on exactly when it runs CUDA graphs.
            # Prefill in forwards of up to a quarter of the batch budget, not the server's
            # 2,048 tokens: eval admits dozens of 1-2k-token prompts at once, one forward each
            # at 2,048 (the 2026-12-07 H100 eval timings of the ~100M model fit ~11 s per
            # million prompt tokens). A long prompt (the needle at 128k) still goes 2,048
            # tokens a forward, as before.
            engine = self._engine = Engine(self.model, max_batch=n_rows, max_seq_len=size,
                                           eos_ids=[self.codec.eos_id], max_queue=1 << 20,
                                           detokenize=self.decode,
                                           compile=None if self.compile_decode else False,
                                           prefill_chunk_tokens=prefill_tokens,
                                           prefill_row_tokens=2048)
        return engine

    def _generate_ids(self, prompts: list[list[int]], requests: Sequence[GenerationRequest],
                      stop: Callable[[int, list[int], int], bool]) -> list[list[int]]:
        """Generate through the engine, which ends a request at its stop strings (`until`); one
        whose `stop(r, new, checked)` fires is cancelled at the next step (its tokens so far
        are kept; the caller cuts the text)."""
        from youtu.serve.engine import SamplingParams

        need = max(len(p) + max(r.max_new_tokens, 1) for p, r in zip(prompts, requests))
        engine = self._engine_for(len(prompts), need)
        handles = []
        for r, (ids, req) in enumerate(zip(prompts, requests)):
            params = SamplingParams(temperature=max(req.temperature, 0.0),
                                    top_p=req.top_p if req.temperature > 0 else 1.0,
                                    seed=req.seed, max_tokens=req.max_new_tokens,
                                    stop=[s for s in req.until if s])
            request_id = f"eval-{next(self._request_ids)}"
            handles.append(engine.submit(ids, params, request_id=request_id,
                                         sink=self._stop_sink(engine, request_id, r, stop)))
        before = {k: engine.stats[k] for k in ENGINE_TIMING}
        out = [h.result().token_ids for h in handles]  # drives the engine's steps
        for k in ENGINE_TIMING:
            self.timing[k] += engine.stats[k] - before[k]
        return out

    @staticmethod
    def _stop_sink(engine, request_id: str, r: int, stop: Callable[[int, list[int], int], bool]):
        new: list[int] = []

        def sink(delta) -> None:
            checked = len(new)
            new.extend(delta.token_ids)
            if delta.finish_reason is None and delta.token_ids and stop(r, new, checked):
                engine.cancel(request_id)

        return sink


class TransformersLM(TokenLM):
    """Any Hugging Face causal LM folder (`AutoModelForCausalLM` + `AutoTokenizer`).

    BOS starts every sequence when the tokenizer adds it by default (Llama-style) or the model
    is a Youtu model (trained with BOS at each document's start, whatever its tokenizer config
    says); `add_bos` overrides.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8, max_length: int = 0, add_bos: bool | None = None,
                 max_batch_tokens: int = 131072):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype]).to(device)
        self.model.eval()
        self.hf_tokenizer = AutoTokenizer.from_pretrained(str(path))
        length = max_length or getattr(self.model.config, "max_position_embeddings", 2048)
        if add_bos is None:
            tok = self.hf_tokenizer
            first = tok("a")["input_ids"][:1]
            add_bos = (tok.bos_token_id is not None and first == [tok.bos_token_id]) or \
                self.model.config.model_type == "youtu"
        super().__init__(_Codec(self.hf_tokenizer, "hf"), device=torch.device(device),
                         batch_size=batch_size, max_length=length, name=str(path),
                         add_bos=add_bos, max_batch_tokens=max_batch_tokens)

    def _score_logits(self, input_ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        keep = torch.arange(lo, hi, device=input_ids.device)
        logits = self.model(input_ids=input_ids, logits_to_keep=keep).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _generate_ids(self, prompts: list[list[int]], requests: Sequence[GenerationRequest],
                      stop: Callable[[int, list[int], int], bool]) -> list[list[int]]:
        out = []
        # One call per request: HF batches need left padding and one shared sampling setting.
        for ids, req in zip(prompts, requests):
            kwargs: dict[str, Any] = {"do_sample": req.temperature > 0}
            if req.temperature > 0:
                torch.manual_seed(req.seed)
                kwargs.update(temperature=req.temperature, top_p=req.top_p)
            if req.until:
                kwargs.update(stop_strings=list(req.until), tokenizer=self.hf_tokenizer)
            x = torch.tensor([ids], device=self.device)
            y = self.model.generate(x, attention_mask=torch.ones_like(x),
                                    max_new_tokens=req.max_new_tokens,
                                    eos_token_id=self.codec.eos_id, pad_token_id=self.codec.pad_id,
                                    **kwargs)
            out.append(y[0, len(ids):].tolist())
        return out


# ---------------------------------------------------------------------------------------------


def load_lm(path: str, *, backend: Backend = "youtu", device: str = "cpu",
            dtype: str = "float32", batch_size: int = 8, max_length: int = 0,
            base_url: str = "", api_key: str = "", timeout_s: float = 120.0,
            add_bos: bool | None = None, max_batch_tokens: int = 131072,
            compile_decode: bool = False) -> LM:
    """Open a model for evaluation.

    Args:
        path: Checkpoint folder (youtu), HF model folder (hf) or served model name (openai).
        backend: 'youtu' | 'hf' | 'openai'.
        device: Torch device for local backends.
        dtype: 'float32' | 'bfloat16' | 'float16' for local backends.
        batch_size: Sequences per forward (local) or prompts per request (openai).
        max_length: Context limit in tokens; 0 = the model's `max_position_embeddings`
            (openai: 0 = unlimited on our side).
        base_url: OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1` (openai only).
        api_key: Bearer token for the endpoint (openai only).
        timeout_s: Per-request timeout (openai only).
        add_bos: Start sequences with BOS; None = yes for Youtu models, else the tokenizer's
            default (local backends; the endpoint's server decides for itself).
        max_batch_tokens: Rows x padded length per forward and KV cache (local backends).
        compile_decode: torch.compile the youtu backend's CUDA-graph decode step.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if backend == "youtu":
        return CheckpointLM(path, device=device, dtype=dtype, batch_size=batch_size,
                            max_length=max_length, add_bos=add_bos,
                            max_batch_tokens=max_batch_tokens, compile_decode=compile_decode)
    if backend == "hf":
        return TransformersLM(path, device=device, dtype=dtype, batch_size=batch_size,
                              max_length=max_length, add_bos=add_bos,
                              max_batch_tokens=max_batch_tokens)
    if backend == "openai":
        from youtu.eval.endpoint import EndpointLM

        if not base_url:
            raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        return EndpointLM(base_url, path, api_key=api_key, batch_size=batch_size,
                          max_length=max_length, timeout_s=timeout_s)
    raise ValueError(f"backend must be 'youtu', 'hf' or 'openai', got {backend!r}")
