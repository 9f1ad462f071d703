"""Harness primitives: log-likelihood parity with transformers, boundaries, rolling windows,
cached batched generation vs a plain argmax loop."""

from __future__ import annotations

import math

import pytest
import torch

from youtu.eval.harness import CheckpointLM, GenerationRequest, cut_at_stop, load_lm

PAIRS = [("The capital of France is", " Paris"), ("def add(a, b):\n    return", " a + b"),
         ("Question: 2 + 2 =", " 4"), ("", "Hello world"), ("Answer: (", "B)"),
         ("x ", "= 1")]


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    return CheckpointLM(tiny_checkpoint, batch_size=3)


def _reference_loglikelihood(model, tok, context, continuation):
    """Independent lm-eval-style computation with a transformers model."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuation = context[:-n_space], context[-n_space:] + continuation
    ctx = tok.encode(context, allow_special=True)
    whole = tok.encode(context + continuation, allow_special=True)
    cont = whole[len(ctx):]
    ids = torch.tensor([[tok.bos_id] + whole])
    logp = torch.log_softmax(model(ids).logits.float(), dim=-1)[0]
    positions = range(ids.shape[1] - 1 - len(cont), ids.shape[1] - 1)
    return sum(logp[p, t].item() for p, t in zip(positions, cont)), len(cont)


@pytest.mark.hf
def test_loglikelihood_matches_transformers(lm, tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    from youtu.tokenizer import Tokenizer

    hf = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    tok = Tokenizer.load(tiny_checkpoint)
    ours = lm.loglikelihood(PAIRS)
    for (ctx, cont), got in zip(PAIRS, ours):
        with torch.no_grad():
            ref, n = _reference_loglikelihood(hf, tok, ctx, cont)
        assert got.num_tokens == n > 0
        assert got.logprob == pytest.approx(ref, abs=1e-4), (ctx, cont)
    # The transformers backend of the harness computes the same numbers.
    via_hf = load_lm(str(tiny_checkpoint), backend="hf", batch_size=2).loglikelihood(PAIRS)
    assert [r.logprob for r in via_hf] == pytest.approx([r.logprob for r in ours], abs=1e-4)
    assert [r.num_tokens for r in via_hf] == [r.num_tokens for r in ours]


def test_boundary_whitespace_moves_to_the_continuation(lm):
    a, b = lm.loglikelihood([("Hello ", "world"), ("Hello", " world")])
    assert a == b
    assert lm.encode_pair("Hello ", "world") == lm.encode_pair("Hello", " world")


def test_pairs_encoded_in_one_call_equal_one_text_at_a_time(tiny_checkpoint, lm):
    """encode_pairs tokenizes every text in one parallel call; the ids are those of encoding
    each context and context + continuation alone, for our tokenizer and the HF one."""
    pairs = PAIRS + [("Hello ", "world"), ("", "x = 1"), ("<tool_call>", "{}</tool_call>")]
    for model in (lm, load_lm(str(tiny_checkpoint), backend="hf")):
        want = []
        for ctx, cont in pairs:
            cut = ctx.rstrip()
            ids = model.encode(cut)
            whole = model.encode(cut + ctx[len(cut):] + cont)
            want.append(((model.head + ids) or [model.prefix_id], whole[len(ids):]))
        assert model.encode_pairs(pairs) == want


def test_first_line_check_on_the_new_tokens_fires_where_the_whole_text_check_does(lm):
    """_ends_first_line decodes only the new tokens unless they hold a line break; step by
    step over generated text (leading blank lines, special tokens, multi-token deltas), it
    fires at exactly the first step where the whole-text rule holds."""
    for text in ("\n\n  \nThe answer is 42 </think><tool_call>{}</tool_call>\nmore",
                 "é ü 中文 no break", "x = 1\ny = 2"):
        ids = lm.encode(text) + [lm.codec.eos_id] * 2 + lm.encode("\n tail")
        for step in (1, 3):
            want = next((n for n in range(step, len(ids) + 1, step)
                         if "\n" in lm.decode(ids[:n]).lstrip()), None)
            got = next((n for n in range(step, len(ids) + 1, step)
                        if lm._ends_first_line(ids[:n], n - step)), None)
            assert got == want, (text, step)


def test_stop_strings_end_generation_in_the_engine(lm):
    """`until` goes to the engine's stop strings: generation ends at the stop, the text is cut
    before it, and it equals the unstopped generation's prefix."""
    prompt = "def add(a, b):\n    return"
    [free] = lm.generate_until([GenerationRequest(prompt, 24)])
    cut = next((s for s in ("\n", " ", "a") if s in free), None)
    assert cut is not None, free
    [stopped] = lm.generate_until([GenerationRequest(prompt, 24, until=[cut])])
    assert stopped == free[:free.index(cut)]


def test_is_greedy_matches_greedy_generation(lm):
    ctx = [lm.prefix_id] + lm.encode("def f(x):\n    return")
    with torch.no_grad():
        greedy = _greedy_ids_without_cache(lm, ctx, 3)
    (lp, is_greedy), (lp2, not_greedy) = lm.score_tokens([(ctx, greedy),
                                                          (ctx, greedy[:2] + [greedy[2] ^ 1])])
    assert is_greedy and not not_greedy and lp > lp2


def test_rolling_windows_cover_each_token_once(tiny_checkpoint):
    text = "The quick brown fox jumps over the lazy dog. " * 6
    long = CheckpointLM(tiny_checkpoint).loglikelihood_rolling([text])[0]
    short_lm = CheckpointLM(tiny_checkpoint, max_length=16)
    ids = short_lm.encode(text)
    windows = short_lm.rolling_windows(ids)
    assert sum(len(w[1]) for w in windows) == len(ids) > 48
    assert [t for _, cont in windows for t in cont] == ids
    assert all(len(ctx) + len(cont) <= 17 or len(ctx) > 16 for ctx, cont in windows)
    short = short_lm.loglikelihood_rolling([text])[0]
    assert short.num_tokens == long.num_tokens == len(ids)
    assert short.logprob != pytest.approx(long.logprob, abs=1e-3)  # less context, other numbers
    # One window = the log-likelihood of the text after BOS.
    assert long.logprob == pytest.approx(CheckpointLM(tiny_checkpoint).score_tokens(
        [([short_lm.prefix_id], ids)])[0][0], abs=1e-4)
    assert long.bits_per_byte == pytest.approx(-long.logprob / math.log(2) / len(text.encode()))
    # A random model over 1024 tokens: about ln(1024) nats per token.
    assert 0.5 * math.log(1024) < -long.logprob / long.num_tokens < 2 * math.log(1024)


def _greedy_ids_without_cache(lm, ids, n):
    out = []
    for _ in range(n):
        out.append(int(lm.model(torch.tensor([ids + out]))[0, -1].argmax()))
        if out[-1] == lm.codec.eos_id:
            break
    return out


def test_cached_batched_generation_equals_plain_argmax(lm):
    prompts = ["import os\n", "The answer to the question is", "def main():\n    x = [1, 2,",
               "a"]
    reqs = [GenerationRequest(p, max_new_tokens=6) for p in prompts]
    ids = [[lm.prefix_id] + lm.encode(p) for p in prompts]
    with torch.no_grad():
        got = lm._generate_ids(ids, reqs, stop=lambda r, new, checked: False)
        want = [_greedy_ids_without_cache(lm, x, 6) for x in ids]
    assert got == want
    texts = lm.generate_until(reqs)
    assert texts == [lm.decode([t for t in w if t != lm.codec.eos_id]) for w in want]
    assert sum(len(t) for t in texts) > 0


def test_stop_strings_and_sampling(lm):
    assert cut_at_stop("abc\ndef```", ["```", "\n"]) == "abc"
    assert cut_at_stop("abc", []) == "abc"
    req = GenerationRequest("Once upon a time", max_new_tokens=12, temperature=1.0, seed=3)
    a, b = lm.generate_until([req, req])
    assert a == b  # same seed, same text
    c = lm.generate_until([GenerationRequest("Once upon a time", 12, temperature=1.0, seed=4)])[0]
    full = lm.generate_until([GenerationRequest("Once upon a time", 12, temperature=1.0,
                                                seed=4, until=(c[2:4],))])[0] if len(c) > 4 else c
    assert c.startswith(full) and (len(c) <= 4 or len(full) < len(c))


def test_first_line_only_stops_early_with_the_same_first_line(lm):
    from youtu.eval.extract import extract_answer

    prompts = ["import os\nimport sys\n", "x = 1\ny = 2\n", "The end.", "def f():\n"]
    full = lm.generate_until([GenerationRequest(p, 24) for p in prompts])
    short = lm.generate_until([GenerationRequest(p, 24, first_line_only=True) for p in prompts])
    for a, b in zip(full, short):
        assert a.startswith(b)
        assert extract_answer("first_line", a) == extract_answer("first_line", b)
    assert sum(map(len, short)) < sum(map(len, full))


def test_truncate_keeps_head_and_tail(lm):
    text = "alpha beta gamma delta " * 40
    cut, n, was_cut = lm.truncate(text, 20)
    assert was_cut and n == 20
    ids = lm.encode(text)
    assert lm.encode(cut)[:5] == ids[:5]
    assert lm.truncate("short", 20) == ("short", len(lm.encode("short")), False)


def test_bad_arguments_are_clear(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        load_lm(str(tmp_path))
    with pytest.raises(ValueError, match="backend must be"):
        load_lm(str(tiny_checkpoint), backend="vllm")
    with pytest.raises(ValueError, match="needs base_url"):
        load_lm("m", backend="openai")
    with pytest.raises(ValueError, match="leaves no room"):
        CheckpointLM(tiny_checkpoint, max_length=8).generate_until([GenerationRequest("x", 8)])


def test_without_bos_an_empty_context_gets_the_prefix_token(tiny_checkpoint):
    plain = CheckpointLM(tiny_checkpoint, add_bos=False)
    ctx, cont = plain.encode_pair("Hello", " world")
    assert ctx == plain.encode("Hello") and plain.prefix_id not in ctx
    assert plain.encode_pair("", "Hello")[0] == [plain.prefix_id]
    with_bos = CheckpointLM(tiny_checkpoint)
    assert with_bos.encode_pair("Hello", " world")[0] == [with_bos.prefix_id] + ctx
    a = plain.loglikelihood([("Hello", " world")])[0]
    b = with_bos.loglikelihood([("Hello", " world")])[0]
    assert a.num_tokens == b.num_tokens and a.logprob != pytest.approx(b.logprob, abs=1e-4)


def test_batches_respect_rows_and_tokens(tiny_checkpoint):
    lm = CheckpointLM(tiny_checkpoint, batch_size=3, max_batch_tokens=100)
    groups = lm._batches([10, 50, 40, 20, 200, 30, 30])
    assert groups[0] == [4]                          # a long row alone, even over the budget
    assert sorted(i for g in groups for i in g) == list(range(7))
    for g in groups[1:]:
        assert len(g) <= 3 and len(g) * max([10, 50, 40, 20, 200, 30, 30][i] for i in g) <= 100
    small = CheckpointLM(tiny_checkpoint, batch_size=8, max_batch_tokens=16)
    assert [r.logprob for r in small.loglikelihood(PAIRS)] == pytest.approx(
        [r.logprob for r in lm.loglikelihood(PAIRS)], abs=1e-5)


@pytest.mark.hf
def test_any_transformers_model_folder_is_scored_like_lm_eval(tiny_checkpoint, tmp_path):
    """The hf backend on a non-Youtu architecture (a random GPT-2 with our tokenizer files):
    log-likelihoods equal a direct computation with that model, and greedy generation runs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from youtu.tokenizer import Tokenizer

    tok = Tokenizer.load(tiny_checkpoint)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=256, n_embd=64,
                                       n_layer=2, n_head=2, bos_token_id=tok.bos_id,
                                       eos_token_id=tok.eos_id)).eval()
    model.save_pretrained(tmp_path)
    tok.save(tmp_path)
    # GPT-2 conventions: the tokenizer adds no BOS, so by default no BOS starts a sequence
    assert load_lm(str(tmp_path), backend="hf").head == []
    lm = load_lm(str(tmp_path), backend="hf", batch_size=2, add_bos=True)  # as the reference
    assert lm.max_length == 256
    got = lm.loglikelihood(PAIRS)
    for (ctx, cont), res in zip(PAIRS, got):
        with torch.no_grad():
            ref, n = _reference_loglikelihood(model, tok, ctx, cont)
        assert res.num_tokens == n > 0
        assert res.logprob == pytest.approx(ref, abs=1e-4), (ctx, cont)
    out = lm.generate_until([GenerationRequest(prompt="The capital of France is", max_new_tokens=5)])
    assert isinstance(out[0], str)


def test_eval_compile_decode_reaches_the_engine(tiny_checkpoint):
    from youtu.eval.config import EvalConfig
    from youtu.eval.runner import open_model

    assert EvalConfig().compile_decode is False
    lm = open_model(EvalConfig(compile_decode=True), str(tiny_checkpoint), "cpu")
    assert lm.compile_decode is True
    assert lm._engine_for(2, 64).graphs is None  # CPU: no CUDA graphs, so nothing to compile


@pytest.mark.gpu
@pytest.mark.parametrize("compile_decode", [False, True])
def test_eval_engine_on_cuda_graphs_compiles_only_when_asked(tiny_checkpoint, compile_decode):
    from youtu.eval.harness import CheckpointLM

    lm = CheckpointLM(tiny_checkpoint, device="cuda", dtype="bfloat16",
                      compile_decode=compile_decode)
    engine = lm._engine_for(2, 64)
    assert engine.graphs is not None and engine.graphs.compile is compile_decode
