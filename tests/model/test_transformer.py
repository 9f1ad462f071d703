"""YoutuForCausalLM: absorbed decode == full forward, packed doc_ids, sizes, FLOPs, init."""

from __future__ import annotations

import pytest
import torch

from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM

TOL = 1e-4
VOCAB = 512  # conftest's tiny configs


@torch.no_grad()
@pytest.mark.parametrize("variant", ["qlora", "noqlora", "yarn"])
def test_token_by_token_decode_matches_full_forward(variant, make_model):
    model = make_model(variant)
    ids = torch.randint(0, VOCAB, (2, 20))
    full = model(ids)
    cache = LatentCache(model.config, max_batch=2, max_seq_len=32)
    steps = [model(ids[:, t:t + 1], positions=torch.full((2, 1), t), cache=cache) for t in range(20)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < TOL


@torch.no_grad()
def test_prefill_then_decode_matches_full_forward(model):
    ids = torch.randint(0, VOCAB, (3, 16))
    full = model(ids)
    cache = LatentCache(model.config, max_batch=3, max_seq_len=16)
    prefill = model(ids[:, :7], positions=torch.arange(7).expand(3, 7), cache=cache)
    assert (prefill - full[:, :7]).abs().max() < TOL
    for t in range(7, 16):
        step = model(ids[:, t:t + 1], positions=torch.full((3, 1), t), cache=cache)
        assert (step[:, 0] - full[:, t]).abs().max() < TOL


@torch.no_grad()
def test_batch_with_different_prompt_lengths_and_cache_rows(model):
    """Right-padded prefill of prompts of lengths 3, 9, 5 into rows 2, 0, 3 of a 4-row cache,
    then decode with per-row positions; each row must match its sequence run alone."""
    lengths, total = [3, 9, 5], 13
    seqs = torch.randint(0, VOCAB, (3, total))
    alone = [model(seqs[b:b + 1])[0] for b in range(3)]
    cache = LatentCache(model.config, max_batch=4, max_seq_len=16)
    cache.kv.normal_()  # stale garbage from "earlier sequences" must never be read
    rows = torch.tensor([2, 0, 3])
    T = max(lengths)
    prompt = torch.full((3, T), model.config.pad_token_id)
    for b, n in enumerate(lengths):
        prompt[b, :n] = seqs[b, :n]
    logits = model(prompt, positions=torch.arange(T).expand(3, T), cache=cache, cache_rows=rows)
    for b, n in enumerate(lengths):
        assert (logits[b, :n] - alone[b][:n]).abs().max() < TOL
    pos = torch.tensor(lengths)
    while int(pos.max()) < total:
        active = (pos < total).nonzero().flatten()  # rows still generating
        p = pos[active]
        step = model(seqs[active, p][:, None], positions=p[:, None], cache=cache, cache_rows=rows[active])
        for i, b in enumerate(active.tolist()):
            assert (step[i, 0] - alone[b][p[i]]).abs().max() < TOL
        pos[active] += 1


@torch.no_grad()
def test_reused_cache_row_needs_no_clearing(model):
    cache = LatentCache(model.config, max_batch=1, max_seq_len=16)
    model(torch.randint(0, VOCAB, (1, 16)), cache=cache)  # fill every slot
    ids = torch.randint(0, VOCAB, (1, 6))
    assert (model(ids, cache=cache) - model(ids)).abs().max() < TOL


@torch.no_grad()
def test_cache_rejects_positions_past_its_end(model):
    cache = LatentCache(model.config, max_batch=1, max_seq_len=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.randint(0, VOCAB, (1, 5)), cache=cache)
    with pytest.raises(ValueError, match="cache_rows"):
        model(torch.randint(0, VOCAB, (1, 2)), cache=cache, cache_rows=torch.tensor([1]))


@torch.no_grad()
def test_packed_documents_match_each_document_alone(model):
    lengths = [[5, 7, 4], [10, 6]]
    ids = torch.randint(0, VOCAB, (2, 16))
    doc_ids = torch.stack([torch.repeat_interleave(torch.arange(len(ls)), torch.tensor(ls)) for ls in lengths])
    positions = torch.stack([torch.cat([torch.arange(n) for n in ls]) for ls in lengths])
    packed = model(ids, positions=positions, doc_ids=doc_ids)
    for b, ls in enumerate(lengths):
        start = 0
        for n in ls:
            alone = model(ids[b:b + 1, start:start + n])[0]
            assert (packed[b, start:start + n] - alone).abs().max() < TOL
            start += n
    # Without doc_ids the later documents see the earlier ones: the mask does something.
    assert (model(ids, positions=positions)[0, 5:] - packed[0, 5:]).abs().max() > 1e-2


def test_packed_forward_backward_and_hidden_states(model):
    ids = torch.randint(0, VOCAB, (2, 12))
    doc_ids = torch.tensor([[0] * 6 + [1] * 6, [0] * 12])
    hidden = model.hidden_states(ids, doc_ids=doc_ids)
    logits = model(ids, doc_ids=doc_ids)
    assert hidden.shape == (2, 12, model.config.hidden_size)
    assert torch.allclose(hidden @ model.lm_head.weight.T, logits, atol=1e-5)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_youtu_2b_parameter_count_and_cache_size():
    with torch.device("meta"):
        model = YoutuForCausalLM(ModelConfig.youtu_2b())
    assert model.num_params() == 1_961_560_064
    assert model.kv_cache_bytes_per_token(torch.bfloat16) == 36 * 1024
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_state_dict_keys_are_hf_names(model, make_model):
    keys = set(model.state_dict())
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
            "model.layers.1.self_attn.q_a_proj.weight", "model.layers.1.self_attn.q_a_layernorm.weight",
            "model.layers.1.self_attn.q_b_proj.weight", "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",
            "model.layers.1.self_attn.kv_a_layernorm.weight", "model.layers.1.self_attn.kv_b_proj.weight",
            "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.gate_proj.weight",
            "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
            "model.layers.1.input_layernorm.weight",
            "model.layers.1.post_attention_layernorm.weight"} <= keys
    assert len(keys) == 2 + 1 + 2 * 12
    plain = make_model("noqlora")
    assert "model.layers.0.self_attn.q_proj.weight" in plain.state_dict()


def test_flops_per_token_formula(model):
    cfg = model.config
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    n_matmul = model.num_params() - norms  # the tied embedding counted once, as the lm_head
    attn_full = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim) * 64
    assert model.flops_per_token(64) == pytest.approx(6 * n_matmul + attn_full)  # PaLM/torchtitan
    assert model.flops_per_token(64, causal=True) == pytest.approx(6 * n_matmul + attn_full / 2)


def test_init_weights_follows_the_vendor_rule():
    with torch.device("meta"):
        model = YoutuForCausalLM(ModelConfig.tiny())
    model.to_empty(device="cpu")
    model.init_weights()
    std = (2 / (5 * 128)) ** 0.5
    assert model.model.layers[0].mlp.up_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert model.model.embed_tokens.weight.std().item() == pytest.approx(2 * std, rel=0.05)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.model.layers[0].self_attn.kv_a_layernorm.weight, torch.ones(32))
    logits = model(torch.randint(0, 4096, (1, 8)))
    assert torch.isfinite(logits).all()


@pytest.mark.gpu
@torch.no_grad()
def test_bf16_cuda_paths_agree():
    """bf16 on CUDA: SDPA kernels vs the math backend, and absorbed decode vs expanded."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = ModelConfig.small(vocab_size=4096)
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).cuda().to(torch.bfloat16)
    model.init_weights()
    ids = torch.randint(0, 4096, (2, 256), device="cuda")
    fast = model(ids).float()
    with sdpa_kernel(SDPBackend.MATH):
        ref = model(ids).float()
    scale = ref.abs().max().item()
    assert (fast - ref).abs().max().item() < 0.05 * scale
    cache = LatentCache(cfg, 2, 256, device="cuda", dtype=torch.bfloat16)
    model(ids[:, :200], cache=cache)
    step = model(ids[:, 200:201], positions=torch.full((2, 1), 200, device="cuda"), cache=cache).float()
    assert (step[:, 0] - ref[:, 200]).abs().max().item() < 0.05 * scale


@pytest.mark.gpu
@torch.no_grad()
def test_decode_step_replays_as_a_cuda_graph(make_config):
    """With `cache.attend_len` set the decode step has static shapes and no host syncs, so a
    serving engine can capture it once and replay it for every position."""
    torch.manual_seed(0)
    model = YoutuForCausalLM(make_config("qlora")).cuda().eval()
    model.init_weights()
    ids = torch.randint(0, VOCAB, (2, 24), device="cuda")
    full = model(ids)
    cache = LatentCache(model.config, max_batch=2, max_seq_len=32, device="cuda")
    cache.attend_len = 32
    model(ids[:, :10], cache=cache)
    token, pos = ids[:, 10:11].clone(), torch.full((2, 1), 10, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        model(token, positions=pos, cache=cache)  # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(token, positions=pos, cache=cache)
    for t in range(10, 24):
        token.copy_(ids[:, t:t + 1])
        pos.fill_(t)
        graph.replay()
        assert (out[:, 0] - full[:, t]).abs().max().item() < 1e-3


@torch.no_grad()
def test_long_prefill_chunks_use_the_expanded_path_and_match_full_forward(make_model):
    """Chunks of >= PREFILL_EXPANDED_MIN_TOKENS go through expanded attention over the cache:
    a fresh prefill (plain causal), a second chunk behind it (visibility mask), then decode."""
    from youtu.model.attention import PREFILL_EXPANDED_MIN_TOKENS as N

    model = make_model("qlora")
    ids = torch.randint(0, VOCAB, (2, 2 * N + 3))
    full = model(ids)
    cache = LatentCache(model.config, max_batch=3, max_seq_len=2 * N + 8)
    rows = torch.tensor([2, 0])
    first = model(ids[:, :N], cache=cache, cache_rows=rows)
    second = model(ids[:, N:2 * N], positions=torch.arange(N, 2 * N).expand(2, N), cache=cache, cache_rows=rows)
    step = model(ids[:, 2 * N:2 * N + 1], positions=torch.full((2, 1), 2 * N), cache=cache, cache_rows=rows)
    assert (first - full[:, :N]).abs().max() < TOL
    assert (second - full[:, N:2 * N]).abs().max() < TOL
    assert (step[:, 0] - full[:, 2 * N]).abs().max() < TOL


def test_set_attention_impl_rejects_unknown_names(make_model):
    model = make_model("qlora")
    with pytest.raises(ValueError, match="attention impl"):
        model.set_attention_impl("flash")
    model.set_attention_impl("sdpa")
    assert {layer.self_attn.impl for layer in model.model.layers} == {"sdpa"}
