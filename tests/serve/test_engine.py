"""Engine: greedy == argmax of the full forward (with and without continuous batching), log-probs,
stops, limits, cancellation, memory budget, streaming, failures that do not take it down."""

from __future__ import annotations

import threading

import pytest
import torch

from youtu.serve.engine import (Engine, EngineFullError, RequestError,
                                SamplingParams, load_engine, rows_for_budget)


@torch.no_grad()
def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Token-by-token argmax of the full (cache-free, expanded-attention) forward."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


PROMPT_LENGTHS = (3, 17, 9, 30, 1, 12)
NEW_TOKENS = (12, 5, 20, 8, 15, 10)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 700, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


@pytest.fixture(scope="module")
def references(model, prompts):
    return [reference_greedy(model, p, n) for p, n in zip(prompts, NEW_TOKENS)]


def _greedy(n: int, **kw) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=n, **kw)


@pytest.mark.parametrize("max_batch,chunk", [(8, 2048), (2, 2048), (3, 7)],
                         ids=["static-batch", "continuous", "continuous-chunked-prefill"])
def test_greedy_equals_full_forward_argmax(model, prompts, references, max_batch, chunk):
    engine = Engine(model, max_batch=max_batch, max_seq_len=64, eos_ids=[],
                    prefill_chunk_tokens=chunk)
    outs = engine.generate(prompts, [_greedy(n) for n in NEW_TOKENS])
    assert [o.token_ids for o in outs] == references
    assert all(o.finish_reason == "length" for o in outs)
    # with fewer rows than requests, requests must have joined while others were running
    assert engine.peak_running == min(max_batch, len(prompts))
    assert engine.metrics()["free_rows"] == engine.max_batch


def test_prefill_row_tokens_chunks_long_rows_of_a_shared_forward(model, prompts, references,
                                                                 monkeypatch):
    """Eval groups many prompts per prefill forward (prefill_chunk_tokens) and still cuts each
    row at prefill_row_tokens: every prefill forward is at most 7 tokens wide here."""
    engine = Engine(model, max_batch=8, max_seq_len=64, eos_ids=[], prefill_chunk_tokens=2048,
                    prefill_row_tokens=7)
    widths = []
    real = model.hidden_states

    def spy(ids, *args, **kwargs):
        widths.append(ids.shape)
        return real(ids, *args, **kwargs)

    monkeypatch.setattr(model, "hidden_states", spy)
    outs = engine.generate(prompts, [_greedy(n) for n in NEW_TOKENS])
    assert [o.token_ids for o in outs] == references
    prefill = [w for w in widths if w[1] > 1]
    assert prefill and max(w[1] for w in prefill) == 7 and max(w[0] for w in prefill) == 6


def test_requests_join_a_running_batch(model, prompts, references):
    engine = Engine(model, max_batch=4, max_seq_len=64, eos_ids=[])
    first = engine.submit(prompts[2], _greedy(NEW_TOKENS[2]))
    for _ in range(5):
        engine.step()
    late = engine.submit(prompts[0], _greedy(NEW_TOKENS[0]))
    assert late.result().token_ids == references[0]
    assert first.result().token_ids == references[2]


@torch.no_grad()
def test_logprobs_are_under_the_sampling_distribution(model, prompts):
    engine = Engine(model, max_batch=4, max_seq_len=64, eos_ids=[])
    params = [SamplingParams(temperature=1.0, max_tokens=6, seed=3),
              SamplingParams(temperature=0.7, top_k=20, max_tokens=6, seed=4)]
    outs = engine.generate(prompts[:2], params)
    for prompt, out, p in zip(prompts, outs, params):
        logits = model(torch.tensor([prompt + out.token_ids]))[0, len(prompt) - 1:-1].float()
        scaled = logits / p.temperature
        if p.top_k:
            kth = scaled.topk(p.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        expected = scaled.log_softmax(-1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_greedy_batches_take_the_split_argmax_and_its_logprob(model, prompts):
    """An all-greedy batch samples by `greedy_pick` (no [B, V] log-softmax): the tokens are the
    full forward's argmax and the log-probs its log-softmax at them."""
    engine = Engine(model, max_batch=4, max_seq_len=64, eos_ids=[])
    outs = engine.generate(prompts[:3], SamplingParams(temperature=0, max_tokens=6))
    for prompt, out in zip(prompts, outs):
        logits = model(torch.tensor([prompt + out.token_ids]))[0, len(prompt) - 1:-1].float()
        assert out.token_ids == logits.argmax(-1).tolist()
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_prompt_logprobs_and_top_logprobs(model, prompts):
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[], prefill_chunk_tokens=5)
    prompt = prompts[3]
    [out] = engine.generate([prompt], SamplingParams(max_tokens=0, prompt_logprobs=True,
                                                     top_logprobs=3))
    assert out.token_ids == [] and out.finish_reason == "length"
    lp = model(torch.tensor([prompt]))[0].float().log_softmax(-1)
    expected = lp[:-1].gather(-1, torch.tensor(prompt[1:])[:, None])[:, 0]
    assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == len(prompt)
    torch.testing.assert_close(torch.tensor(out.prompt_logprobs[1:]), expected, atol=1e-4, rtol=1e-4)
    assert [ids for ids, _ in (zip(*t) for t in out.prompt_top_logprobs)] and \
        [t[0][0] for t in out.prompt_top_logprobs] == lp[:-1].argmax(-1).tolist()


def test_seeded_request_is_reproducible_whatever_else_is_batched(model, prompts):
    engine = Engine(model, max_batch=6, max_seq_len=64, eos_ids=[])
    seeded = SamplingParams(temperature=1.0, max_tokens=10, seed=42)
    [alone] = engine.generate([prompts[1]], seeded)
    crowd = engine.generate(prompts, [seeded if i == 1 else SamplingParams(max_tokens=7)
                                      for i in range(len(prompts))])
    assert crowd[1].token_ids == alone.token_ids
    other = engine.generate([prompts[1]], SamplingParams(temperature=1.0, max_tokens=10, seed=43))
    assert other[0].token_ids != alone.token_ids


def test_stop_token_and_eos(model, prompts, references):
    ref = references[2]
    stop_at = next(i for i, t in enumerate(ref) if t not in ref[:i])  # first occurrence
    stop_at = max(stop_at, 3)
    token = ref[stop_at]
    first = ref.index(token)
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[token])
    [eos] = engine.generate([prompts[2]], _greedy(20))
    assert eos.token_ids == ref[:first + 1] and eos.finish_reason == "stop" and eos.stop_reason is None
    [ign] = engine.generate([prompts[2]], _greedy(20, ignore_eos=True))
    assert ign.token_ids == ref and ign.finish_reason == "length"
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[])
    [out] = engine.generate([prompts[2]], _greedy(20, stop_token_ids=[token]))
    assert out.finish_reason == "stop" and out.stop_reason == token


def test_stop_strings_use_the_detokenizer(model, prompts, references, tok):
    ref = references[2]
    text = tok.decode(ref)
    stop = text[len(tok.decode(ref[:4])):][:3]
    assert stop
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[], detokenize=tok.decode)
    [out] = engine.generate([prompts[2]], _greedy(20, stop=[stop]))
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert stop in tok.decode(out.token_ids) and stop not in tok.decode(out.token_ids[:-1])
    no_detok = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[])
    with pytest.raises(RequestError, match="detokenize"):
        no_detok.submit(prompts[0], _greedy(3, stop=["x"]))


def test_context_limit_and_refusals(model):
    engine = Engine(model, max_batch=2, max_seq_len=16, eos_ids=[], max_queue=3)
    [out] = engine.generate([list(range(13))], _greedy(50))
    assert len(out.token_ids) == 3 and out.finish_reason == "length"
    with pytest.raises(RequestError, match="16"):
        engine.submit(list(range(16)), _greedy(1))
    with pytest.raises(RequestError, match="empty"):
        engine.submit([], _greedy(1))
    with pytest.raises(RequestError, match="token ids"):
        engine.submit([model.config.vocab_size], _greedy(1))
    handles = [engine.submit([1, 2, 3], _greedy(2)) for _ in range(3)]
    with pytest.raises(EngineFullError, match="max_queue"):
        engine.submit([1, 2, 3], _greedy(2))
    assert all(h.result().finish_reason == "length" for h in handles)  # still serving
    engine.submit([1, 2, 3], _greedy(2)).result()


def test_cancel_frees_the_row(model, prompts):
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[])
    running = engine.submit(prompts[0], _greedy(40))
    waiting = [engine.submit(prompts[1], _greedy(40)), engine.submit(prompts[2], _greedy(40))]
    engine.step()
    assert engine.metrics()["free_rows"] == 0 and engine.metrics()["waiting"] == 1
    running.cancel()
    waiting[1].cancel()
    engine.step()
    out = running.result()
    assert out.finish_reason == "abort" and 0 < len(out.token_ids) < 40
    assert waiting[1].result().finish_reason == "abort" and waiting[1].result().token_ids == []
    assert waiting[0].result().finish_reason == "length"
    assert engine.metrics()["free_rows"] == 2


def test_cache_is_allocated_from_the_budget(model):
    per_token = model.kv_cache_bytes_per_token(torch.float32)
    assert rows_for_budget(per_token, 8, 64, 0) == 8
    assert rows_for_budget(per_token, 8, 64, 3 * 64 * per_token + 5) == 3
    with pytest.raises(ValueError, match="budget"):
        rows_for_budget(per_token, 8, 64, 64 * per_token - 1)
    engine = Engine(model, max_batch=8, max_seq_len=64, eos_ids=[], cache_memory_bytes=3 * 64 * per_token)
    assert engine.max_batch == 3 and engine.cache.nbytes <= 3 * 64 * per_token
    outs = engine.generate([[1, 2]] * 7, _greedy(4))  # more requests than rows: they queue
    assert all(len(o.token_ids) == 4 for o in outs) and engine.peak_running == 3


def test_a_failing_forward_fails_its_requests_not_the_engine(model, prompts, references, monkeypatch):
    engine = Engine(model, max_batch=4, max_seq_len=64, eos_ids=[])
    embed = model.model.embed_tokens
    real = embed.forward  # every forward (prefill, decode) starts with the embedding
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the second decode step
            raise RuntimeError("simulated out of memory")
        return real(*a, **kw)

    monkeypatch.setattr(embed, "forward", flaky)
    outs = engine.generate(prompts[:2], _greedy(5))
    assert [o.finish_reason for o in outs] == ["error", "error"]
    assert "simulated" in outs[0].error
    assert [len(o.token_ids) for o in outs] == [2, 2]  # prefill's and the first decode's
    monkeypatch.setattr(embed, "forward", real)
    assert engine.generate([prompts[0]], _greedy(12))[0].token_ids == references[0]
    assert engine.metrics()["free_rows"] == 4


def test_streaming_deltas_and_background_loop(model, prompts, references):
    engine = Engine(model, max_batch=3, max_seq_len=64, eos_ids=[])
    handle = engine.submit(prompts[0], _greedy(12))
    deltas = list(handle)  # drives the engine itself (no loop running)
    assert [t for d in deltas for t in d.token_ids] == references[0]
    assert deltas[-1].finish_reason == "length" and deltas[-1].completion.token_ids == references[0]

    engine.start()
    try:
        results = {}

        def client(i):
            results[i] = engine.generate([prompts[i]], _greedy(NEW_TOKENS[i]))[0].token_ids

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [results[i] for i in range(len(prompts))] == references
    finally:
        engine.shutdown()
    assert not engine.running


@torch.no_grad()
def test_repetition_penalty_matches_transformers_greedy(model, prompts, references):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    penalty = RepetitionPenaltyLogitsProcessor(1.5)
    ids = list(prompts[2])
    for _ in range(20):
        logits = model(torch.tensor([ids]))[:, -1].float()
        ids.append(int(penalty(torch.tensor([ids]), logits).argmax()))
    expected = ids[len(prompts[2]):]
    engine = Engine(model, max_batch=2, max_seq_len=64, eos_ids=[])
    outs = engine.generate([prompts[2], prompts[0]], [_greedy(20, repetition_penalty=1.5), _greedy(12)])
    assert outs[0].token_ids == expected != references[2]
    assert outs[1].token_ids == references[0]  # its neighbour in the batch is unaffected


def test_load_engine_from_checkpoint(checkpoint, tok, model, prompts, references):
    engine, loaded_tok = load_engine(checkpoint, max_batch=2, max_seq_len=64)
    assert loaded_tok.fingerprint == tok.fingerprint and engine.eos_ids == {tok.eos_id}
    [out] = engine.generate([prompts[0]], _greedy(12, ignore_eos=True))
    assert out.token_ids == references[0]
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_engine(checkpoint / "missing")


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True], ids=["graphs", "graphs+compile"])
def test_cuda_graph_decode_equals_eager_and_full_forward(model, prompts, references, compile):
    """CUDA graphs (on by default on CUDA) == the eager engine on CUDA (fused decode kernel,
    no graphs) == the CPU full-forward argmax; fp32 tiny model, batch and length buckets crossed."""
    import copy

    gpu_model = copy.deepcopy(model).cuda()
    params = [_greedy(n) for n in NEW_TOKENS]
    eager = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], use_cuda_graph=False)
    graphed = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], compile=compile)
    assert graphed.graphs is not None and graphed.graphs.compile == compile  # the CUDA default
    a = [o.token_ids for o in eager.generate(prompts, params)]
    b = [o.token_ids for o in graphed.generate(prompts, params)]
    assert b == a == references
    assert {key[0] for key in graphed.graphs.graphs} >= {4, 2}  # batch buckets as rows emptied
    long = graphed.generate([prompts[0]], _greedy(280))[0]  # crosses the 256-slot length bucket
    assert long.token_ids == eager.generate([prompts[0]], _greedy(280))[0].token_ids
    assert any(key[1] > 256 for key in graphed.graphs.graphs)
    # seeded sampling on the GPU: reproducible whatever else is batched, graphs or not
    seeded = SamplingParams(temperature=1.0, max_tokens=10, seed=42)
    [alone] = eager.generate([prompts[1]], seeded)
    crowd = graphed.generate(prompts[:3], [SamplingParams(max_tokens=7), seeded, _greedy(5)])
    assert crowd[1].token_ids == alone.token_ids


@pytest.mark.gpu
@torch.no_grad()
def test_decode_forwards_do_not_sync_with_the_host(model, prompts):
    """The eager decode forward as the engine calls it (attended length known on the host) and
    the graphed step (`decode_step`) raise under CUDA's sync debug mode only if an op waits on
    the device (`cache.check`, `int(positions.max())`, `.item()`, a boolean-mask index...)."""
    import copy

    from youtu.serve.graphs import decode_step

    gpu_model = copy.deepcopy(model).cuda()
    engine = Engine(gpu_model, max_batch=2, max_seq_len=64, eos_ids=[], use_cuda_graph=False)
    engine.generate([prompts[0]], _greedy(3))  # fills row 0 and compiles the kernels
    ids = torch.tensor([[5], [7]], device="cuda")
    pos = torch.tensor([[len(prompts[0]) + 3], [9]], device="cuda")
    rows = torch.tensor([0, 1], device="cuda")
    engine.cache.attend_len = 64
    decode_step(gpu_model, engine.cache, ids, pos, rows, 64)  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu_model.hidden_states(ids, positions=pos, cache=engine.cache, cache_rows=rows)
        decode_step(gpu_model, engine.cache, ids, pos, rows, 64)
        decode_step(gpu_model, engine.cache, ids, pos, rows, 64, fused=True)  # engine default
    finally:
        torch.cuda.set_sync_debug_mode(0)
        engine.cache.attend_len = None


# ---- RL rollouts: a compute-dtype sampler copy refreshed in place, a budgeted cache ---------

def test_sampler_copy_is_cast_once_and_the_engine_cache_follows_its_dtype(model):
    from youtu.serve.engine import cache_budget_bytes, sampler_copy

    sampler = sampler_copy(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in sampler.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the master is untouched
    assert sampler.lm_head.weight is sampler.model.embed_tokens.weight  # still tied
    per_token = model.kv_cache_bytes_per_token(torch.bfloat16)
    engine = Engine(sampler, max_batch=16, max_seq_len=64, eos_ids=[],
                    cache_memory_bytes=5 * 64 * per_token + 100)
    assert engine.cache.dtype == torch.bfloat16 and engine.max_batch == 5
    assert engine.cache.bytes_per_token() == per_token  # half the fp32 cache
    assert cache_budget_bytes("cpu", 0.5) == 0  # no cap on the CPU
    with pytest.raises(ValueError, match="fraction"):
        cache_budget_bytes("cpu", 0)


def test_refresh_sampler_updates_the_engine_in_place(model, prompts):
    import copy

    from youtu.serve.engine import refresh_sampler, sampler_copy

    policy = copy.deepcopy(model)
    sampler = sampler_copy(policy, torch.float32)
    engine = Engine(sampler, max_batch=2, max_seq_len=64, eos_ids=[])
    before = engine.generate([prompts[0]], _greedy(12))[0].token_ids
    storage = sampler.model.layers[0].mlp.up_proj.weight.data_ptr()
    with torch.no_grad():  # an optimizer step on the policy
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert engine.generate([prompts[0]], _greedy(12))[0].token_ids == before  # not yet
    refresh_sampler(sampler, policy)
    assert sampler.model.layers[0].mlp.up_proj.weight.data_ptr() == storage  # same storage
    after = engine.generate([prompts[0]], _greedy(12))[0].token_ids
    assert after == reference_greedy(policy, prompts[0], 12) != before
    with pytest.raises(ValueError, match="sampler_copy"):
        refresh_sampler(sampler, torch.nn.Linear(2, 2))


# ---- decode-time weight layout and host/GPU overlap ------------------------------------------

def _storage_bytes(model) -> int:
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    return sum(storages.values())


@torch.no_grad()
def test_fused_decode_equals_unfused_and_keeps_the_checkpoint_layout(model, prompts, references):
    import copy

    from youtu.serve.graphs import decode_step, decode_weights_fused

    plain = copy.deepcopy(model)
    keys, nbytes = list(plain.state_dict()), _storage_bytes(plain)
    unfused = Engine(plain, max_batch=3, max_seq_len=64, eos_ids=[], fuse_weights=False)
    assert not unfused.fused and not decode_weights_fused(plain)
    params = [_greedy(n) for n in NEW_TOKENS]
    a = unfused.generate(prompts, params)
    fused = Engine(plain, max_batch=3, max_seq_len=64, eos_ids=[])  # the default
    assert fused.fused and decode_weights_fused(plain)
    assert list(plain.state_dict()) == keys and _storage_bytes(plain) == nbytes  # no second copy
    b = fused.generate(prompts, params)
    assert [o.token_ids for o in b] == [o.token_ids for o in a] == references
    torch.testing.assert_close(torch.tensor([lp for o in b for lp in o.logprobs]),
                               torch.tensor([lp for o in a for lp in o.logprobs]), atol=1e-5, rtol=1e-5)
    # one decode step's logits, fused vs separate projections, on a filled cache row
    ids, pos, rows = torch.tensor([[5], [9]]), torch.tensor([[20], [3]]), torch.tensor([0, 1])
    one = decode_step(plain, fused.cache, ids, pos, rows, 21)
    two = decode_step(plain, fused.cache, ids, pos, rows, 21, fused=True)
    torch.testing.assert_close(two, one, atol=1e-5, rtol=1e-5)


def test_weights_replaced_behind_the_engine_fail_loudly(model, prompts):
    """A cast or an assign-load gives the parameters new storage: the fused layout (and any
    captured graph) would keep reading the old weights, so requests fail with the fix."""
    import copy

    own = copy.deepcopy(model)
    engine = Engine(own, max_batch=2, max_seq_len=64, eos_ids=[])
    assert engine.generate([prompts[0]], _greedy(3))[0].finish_reason == "length"
    own.load_state_dict({k: v.clone() for k, v in own.state_dict().items()}, assign=True)
    [out] = engine.generate([prompts[0]], _greedy(3))
    assert out.finish_reason == "error" and "in place" in out.error


def test_refresh_sampler_refreshes_the_fused_decode_weights(model, prompts):
    import copy

    from youtu.serve.engine import refresh_sampler, sampler_copy
    from youtu.serve.graphs import decode_weights_fused

    policy = copy.deepcopy(model)
    sampler = sampler_copy(policy, torch.float32)
    engine = Engine(sampler, max_batch=2, max_seq_len=64, eos_ids=[])
    assert engine.fused
    gate_up = sampler.model.layers[0].mlp.gate_up
    q_kv_a = sampler.model.layers[1].self_attn.q_kv_a
    before = engine.generate([prompts[0]], _greedy(12))[0].token_ids
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "mlp.gate_proj" in name or "q_a_proj" in name or "kv_a_proj" in name:
                p.add_(torch.randn_like(p) * 0.2)  # only weights the fused tensors hold
    refresh_sampler(sampler, policy)
    assert decode_weights_fused(sampler)  # refreshed through the views, layout intact
    assert sampler.model.layers[0].mlp.gate_up is gate_up
    torch.testing.assert_close(gate_up[:gate_up.shape[0] // 2],
                               policy.model.layers[0].mlp.gate_proj.weight)
    torch.testing.assert_close(q_kv_a[-sampler.config.kv_lora_rank - sampler.config.qk_rope_head_dim:],
                               policy.model.layers[1].self_attn.kv_a_proj_with_mqa.weight)
    after = engine.generate([prompts[0]], _greedy(12))[0].token_ids
    assert after == reference_greedy(policy, prompts[0], 12) != before


def _run_recorded(engine: Engine, prompts, params, cancel_after: dict[int, int] | None = None):
    """Submit every request with a sink; returns per request (deltas' tokens, completion)."""
    cancel_after = cancel_after or {}
    deltas = {i: [] for i in range(len(prompts))}
    handles = []
    for i, (p, sp) in enumerate(zip(prompts, params)):
        def sink(d, i=i):
            deltas[i].append(list(d.token_ids))
            got = sum(len(t) for t in deltas[i])
            if i in cancel_after and got == cancel_after[i] and d.finish_reason is None:
                engine.cancel(handles[i].id)
        handles.append(engine.submit(p, sp, sink=sink))
    outs = [h.result() for h in handles]
    return deltas, outs


def test_overlapped_decode_gives_the_same_tokens_stops_and_stream(model, prompts, references, tok):
    """Launching step N+1 before reading step N back changes nothing a client sees: greedy and
    seeded tokens, log-probs, top log-probs, EOS / stop ids / stop strings / max_tokens /
    context limits, repetition penalty, joins into a full batch, cancellation from a callback."""
    ref = references[2]
    eos = ref[3]
    stop = tok.decode(ref)[len(tok.decode(ref[:5])):][:2]
    params = [_greedy(12, ignore_eos=True, top_logprobs=3),
              SamplingParams(temperature=1.0, top_k=30, max_tokens=9, seed=7),
              _greedy(20),                                      # ends on EOS
              _greedy(30, stop=[stop], ignore_eos=True),        # ends on a stop string
              SamplingParams(temperature=0.8, max_tokens=14, seed=3, repetition_penalty=1.3),
              _greedy(40, ignore_eos=True),                     # cancelled after 6 tokens
              _greedy(60, ignore_eos=True),                     # ends at the context limit
              _greedy(7, stop_token_ids=[ref[5]], ignore_eos=True)]
    reqs = [prompts[0], prompts[1], prompts[2], prompts[2], prompts[3], prompts[4],
            list(range(1, 40)), prompts[2]]
    runs = {}
    for overlap in (False, True):
        engine = Engine(model, max_batch=3, max_seq_len=64, eos_ids=[eos], detokenize=tok.decode,
                        overlap=overlap)
        runs[overlap] = _run_recorded(engine, reqs, params, cancel_after={5: 6})
        assert engine.metrics()["free_rows"] == 3 and not engine.has_work()
    (d0, o0), (d1, o1) = runs[False], runs[True]
    assert [o.token_ids for o in o1] == [o.token_ids for o in o0]
    assert [(o.finish_reason, o.stop_reason) for o in o1] == [(o.finish_reason, o.stop_reason) for o in o0]
    assert [o.finish_reason for o in o0] == ["length", "length", "stop", "stop", "length", "abort",
                                             "length", "stop"]
    assert len(o0[5].token_ids) == 6 and len(o0[6].token_ids) == 64 - 39
    assert d1 == d0  # the same deltas in the same order
    for a, b in zip(o0, o1):
        torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), atol=1e-5, rtol=1e-5)
    assert [[i for i, _ in t] for t in o1[0].top_logprobs] == [[i for i, _ in t] for t in o0[0].top_logprobs]


def test_overlap_runs_no_step_past_a_known_limit(model, prompts, monkeypatch):
    """max_tokens and the context are known ahead: the overlapped engine launches exactly the
    steps the synchronous one does (an extra step only follows a token-triggered stop)."""
    embed = model.model.embed_tokens
    real = embed.forward
    calls = {"n": 0}

    def counted(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(embed, "forward", counted)
    counts = []
    for overlap in (False, True):
        calls["n"] = 0
        engine = Engine(model, max_batch=2, max_seq_len=16, eos_ids=[], overlap=overlap)
        outs = engine.generate([prompts[0], list(range(1, 14))], [_greedy(6), _greedy(50)])
        assert [len(o.token_ids) for o in outs] == [6, 3]
        counts.append(calls["n"])
    assert counts[0] == counts[1] == 1 + 5  # one prefill, then decode steps up to token 6


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True], ids=["graphs", "graphs+compile"])
def test_fused_and_overlapped_decode_under_cuda_graphs(model, prompts, references, tok, compile):
    """The fast path (fused weights, overlap, graphs, optionally compiled) == the eager
    engine with separate projections and no overlap == the CPU full-forward argmax; the
    overlapped engine streams what the synchronous one does (seeded rows, stops, cancel)."""
    import copy

    gpu_model = copy.deepcopy(model).cuda()
    params = [_greedy(n) for n in NEW_TOKENS]
    plain = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], use_cuda_graph=False,
                   fuse_weights=False, overlap=False)
    a = [o.token_ids for o in plain.generate(prompts, params)]
    fast = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], compile=compile,
                  overlap=True)
    assert fast.fused and fast.overlap and fast.graphs is not None and fast.graphs.fused
    b = [o.token_ids for o in fast.generate(prompts, params)]
    assert b == a == references
    long = fast.generate([prompts[0]], _greedy(280))[0]  # crosses the 256-slot length bucket
    assert long.token_ids == plain.generate([prompts[0]], _greedy(280))[0].token_ids
    ref = references[2]
    mixed = [SamplingParams(temperature=1.0, max_tokens=9, seed=7), _greedy(20),
             _greedy(40, ignore_eos=True), _greedy(7, stop_token_ids=[ref[5]], ignore_eos=True),
             SamplingParams(temperature=0.8, max_tokens=14, seed=3, repetition_penalty=1.3)]
    reqs = [prompts[1], prompts[2], prompts[4], prompts[2], prompts[3]]
    runs = []
    for engine in (Engine(gpu_model, max_batch=3, max_seq_len=64, eos_ids=[ref[3]], overlap=False,
                          use_cuda_graph=False),
                   Engine(gpu_model, max_batch=3, max_seq_len=64, eos_ids=[ref[3]], compile=compile,
                          overlap=True)):
        deltas, outs = _run_recorded(engine, reqs, mixed, cancel_after={2: 6})
        runs.append((deltas, [(o.token_ids, o.finish_reason) for o in outs]))
    assert runs[1] == runs[0]


@pytest.mark.gpu
@torch.no_grad()
def test_launching_an_overlapped_step_does_not_wait_for_the_gpu(model, prompts):
    """With a step in flight, launching the next (inputs, graph replay, sampling, the queued
    copy back) raises under CUDA's sync debug mode only if an op waits on the device."""
    import copy

    gpu_model = copy.deepcopy(model).cuda()
    engine = Engine(gpu_model, max_batch=2, max_seq_len=64, eos_ids=[], compile=False,
                    overlap=True)
    handle = engine.submit(prompts[0], _greedy(30))
    for _ in range(4):  # prefill, then decode steps: captured, a step in flight
        engine.step()
    prev = engine._inflight
    assert prev is not None and engine.overlap
    n = len(prev.seqs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine._launch(prev.seqs, list(range(n)), [0] * n, prev)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(handle.result().token_ids) == 30


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_equals_synchronous_on_random_workloads(model, seed):
    """Random mixes (prompt lengths, greedy / seeded, limits, stop ids, EOS, cancellation from a
    callback, fewer rows than requests): overlapped == synchronous, delta for delta."""
    import random

    rnd = random.Random(seed)
    n = 10
    reqs = [[rnd.randrange(1, 700) for _ in range(rnd.randint(1, 20))] for _ in range(n)]
    params, cancels = [], {}
    for i in range(n):
        kw = dict(max_tokens=rnd.randint(0, 15), ignore_eos=rnd.random() < 0.3,
                  stop_token_ids=rnd.sample(range(700), 40) if rnd.random() < 0.5 else [])
        if rnd.random() < 0.5:
            kw.update(temperature=rnd.choice([0.7, 1.0]), seed=rnd.randrange(100))
        else:
            kw.update(temperature=0)
        params.append(SamplingParams(**kw))
        if rnd.random() < 0.3:
            cancels[i] = rnd.randint(1, 6)
    max_batch, eos = rnd.randint(1, 4), rnd.sample(range(700), 30)
    runs = []
    for overlap in (False, True):
        engine = Engine(model, max_batch=max_batch, max_seq_len=40, eos_ids=eos, overlap=overlap)
        deltas, outs = _run_recorded(engine, reqs, params, cancel_after=cancels)
        runs.append((deltas, [(o.token_ids, o.finish_reason, o.stop_reason) for o in outs]))
        engine.step()  # a discarded step in flight, a cancel of a finished request: gone now
        assert not engine.has_work() and engine.metrics()["free_rows"] == engine.max_batch
    assert runs[1] == runs[0]
    assert len({r[1] for r in runs[0][1]}) > 1  # the mix ends in more than one way


# ---- decode GEMV kernels (gemv="triton"): CUDA only; the kernels' own tests are in
# tests/model/test_decode_gemv.py (interpreter on the CPU, compiled on the GPU)


def test_triton_gemv_is_refused_where_it_cannot_run(model, checkpoint, tmp_path):
    import copy

    from youtu.serve.config import ServeConfig
    from youtu.serve.engine import engine_from_config

    own = copy.deepcopy(model)
    with pytest.raises(ValueError, match="gemv='triton' needs a CUDA device"):
        Engine(own, max_batch=2, max_seq_len=32, eos_ids=[], gemv="triton")
    with pytest.raises(ValueError, match="'cublas' or 'triton'"):
        Engine(own, max_batch=2, max_seq_len=32, eos_ids=[], gemv="cutlass")
    with pytest.raises(ValueError, match="fuse_decode_weights"):
        ServeConfig(decode_gemv="triton", fuse_decode_weights=False)
    with pytest.raises(ValueError, match="fuse_decode_weights"):
        ServeConfig(decode_gemv="triton+pdl", fuse_decode_weights=False)
    with pytest.raises(ValueError, match="decode_gemv must be one of"):
        ServeConfig(decode_gemv="pdl")
    assert ServeConfig(decode_gemv="auto+pdl").decode_gemv == "auto+pdl"
    from youtu.model.decode_gemv import IMPLEMENTATIONS
    from youtu.serve.config import DECODE_GEMVS

    assert DECODE_GEMVS == IMPLEMENTATIONS
    # the [serve] setting is ignored on the CPU, as use_cuda_graph is
    engine, _ = engine_from_config(ServeConfig(checkpoint=str(checkpoint), decode_gemv="triton"),
                                   run_dir=tmp_path, device="cpu")
    assert engine.gemv == "cublas"


def test_auto_gemv_and_overlap_are_the_defaults_and_fall_back_where_they_cannot_run(model, checkpoint,
                                                                                     tmp_path):
    """'auto' (the default) runs the Triton GEMVs only at batch <= AUTO_MAX_ROWS and only where
    they can run: on the CPU, or with unfused weights, it is cuBLAS; overlap is on only on CUDA."""
    import copy

    from youtu.model import decode_gemv
    from youtu.serve.config import ServeConfig
    from youtu.serve.engine import engine_from_config

    assert [decode_gemv.kernel_rows(g) for g in ("cublas", "auto", "triton")] == \
        [0, decode_gemv.AUTO_MAX_ROWS, decode_gemv.MAX_ROWS]
    assert [decode_gemv.kernel_rows(g) for g in ("auto+pdl", "triton+pdl")] == \
        [decode_gemv.AUTO_MAX_ROWS, decode_gemv.MAX_ROWS]
    assert [decode_gemv.dependent_launch(g) for g in ("auto", "auto+pdl", "triton+pdl")] == \
        [False, True, True]
    assert 1 <= decode_gemv.AUTO_MAX_ROWS <= decode_gemv.MAX_ROWS
    with pytest.raises(ValueError, match="'auto', 'cublas' or 'triton'"):
        decode_gemv.kernel_rows("fast")
    engine = Engine(copy.deepcopy(model), max_batch=2, max_seq_len=32, eos_ids=[])
    assert (engine.gemv, engine.overlap) == ("cublas", False)  # the CPU: neither can run
    unfused = Engine(copy.deepcopy(model), max_batch=2, max_seq_len=32, eos_ids=[],
                     fuse_weights=False, gemv="auto")
    assert unfused.gemv == "cublas"
    cpu_pdl = Engine(copy.deepcopy(model), max_batch=2, max_seq_len=32, eos_ids=[],
                     gemv="auto+pdl")
    assert cpu_pdl.gemv == "cublas"  # the CPU: no kernels, so no dependent launch either
    assert (ServeConfig().decode_gemv, ServeConfig().overlap_decode) == ("auto+pdl", True)
    ServeConfig(decode_gemv="auto", fuse_decode_weights=False)  # auto needs no fused layout
    served, _ = engine_from_config(ServeConfig(checkpoint=str(checkpoint)), run_dir=tmp_path,
                                   device="cpu")
    assert (served.gemv, served.overlap) == ("cublas", False)


@pytest.mark.gpu
def test_auto_gemv_takes_the_kernels_at_batch_one_only(model, prompts, monkeypatch):
    """On CUDA the default engine is 'auto' with overlap on; its graphed batch-1 decode equals
    the cuBLAS engine's; a 1-row decode step calls the kernels and a 2-row one does not."""
    import copy

    from youtu.model import decode_gemv
    from youtu.serve.graphs import decode_step

    gpu_model = copy.deepcopy(model).cuda()
    fast = Engine(gpu_model, max_batch=2, max_seq_len=300, eos_ids=[])
    assert (fast.gemv, fast.overlap) == ("auto", True) and fast.graphs is not None
    plain = Engine(gpu_model, max_batch=2, max_seq_len=300, eos_ids=[], gemv="cublas",
                   use_cuda_graph=False, overlap=False)
    for p, n in zip(prompts, NEW_TOKENS):
        assert fast.generate([p], [_greedy(n)])[0].token_ids == \
            plain.generate([p], [_greedy(n)])[0].token_ids
    calls = []
    real = decode_gemv.gemv
    monkeypatch.setattr(decode_gemv, "gemv", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids, pos = torch.tensor([[1], [2]], device="cuda"), torch.tensor([[3], [3]], device="cuda")
    rows = torch.tensor([0, 1], device="cuda")
    decode_step(gpu_model, fast.cache, ids, pos, rows, 64, fused=True, gemv="auto")
    assert calls == []  # 2 rows > AUTO_MAX_ROWS: cuBLAS
    decode_step(gpu_model, fast.cache, ids[:1], pos[:1], rows[:1], 64, fused=True, gemv="auto")
    assert calls


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True], ids=["graphs", "graphs+compile"])
def test_triton_gemv_decode_under_cuda_graphs_equals_cublas(model, prompts, references, compile):
    """gemv='triton' (graphed, optionally compiled; eager too) == the cuBLAS engine == the CPU
    full-forward argmax, fp32 tiny model; batch buckets above 8 fall back to cuBLAS."""
    import copy

    gpu_model = copy.deepcopy(model).cuda()
    params = [_greedy(n) for n in NEW_TOKENS]
    cublas = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], use_cuda_graph=False)
    a = [o.token_ids for o in cublas.generate(prompts, params)]
    eager = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], use_cuda_graph=False,
                   gemv="triton")
    graphed = Engine(gpu_model, max_batch=4, max_seq_len=300, eos_ids=[], compile=compile,
                     gemv="triton")
    assert graphed.graphs is not None and graphed.graphs.gemv == "triton"
    b = [o.token_ids for o in eager.generate(prompts, params)]
    c = [o.token_ids for o in graphed.generate(prompts, params)]
    assert c == b == a == references
    long = graphed.generate([prompts[0]], _greedy(280))[0]  # crosses the 256-slot length bucket
    assert long.token_ids == cublas.generate([prompts[0]], _greedy(280))[0].token_ids
    wide = Engine(gpu_model, max_batch=12, max_seq_len=64, eos_ids=[], compile=compile,
                  gemv="triton")
    many = (prompts * 2)[:10]
    assert ([o.token_ids for o in wide.generate(many, _greedy(6))]
            == [o.token_ids for o in cublas.generate(many, _greedy(6))])  # the 12-bucket: cuBLAS


@pytest.mark.gpu
@torch.no_grad()
def test_triton_gemv_decode_step_does_not_sync_with_the_host(model, prompts):
    import copy

    from youtu.serve.graphs import decode_step

    gpu_model = copy.deepcopy(model).cuda()
    engine = Engine(gpu_model, max_batch=2, max_seq_len=64, eos_ids=[], use_cuda_graph=False,
                    gemv="triton")
    engine.generate([prompts[0]], _greedy(3))  # fills row 0, autotunes batch 1
    ids = torch.tensor([[5], [7]], device="cuda")
    pos = torch.tensor([[len(prompts[0]) + 3], [9]], device="cuda")
    rows = torch.tensor([0, 1], device="cuda")
    decode_step(gpu_model, engine.cache, ids, pos, rows, 64, fused=True, gemv="triton")  # tunes B=2
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        decode_step(gpu_model, engine.cache, ids, pos, rows, 64, fused=True, gemv="triton")
    finally:
        torch.cuda.set_sync_debug_mode(0)
