"""SFT: loss masks through packing token by token, batching and its resume, held-out split,
trajectories, and a short run lowering the held-out loss."""

from __future__ import annotations

import json
import random

import pytest
import torch

from youtu.config import ConfigError
from youtu.data.packing import IGNORE_INDEX
from youtu.tokenizer import Tokenizer
from youtu.tokenizer.chat import encode_chat
from youtu.train.metrics import read_metrics
from youtu.train.sft import SFTBatches, encode_trajectories, is_heldout, main

from .conftest import chat_conversation
from .train_helpers import run_sft


def test_loss_mask_token_by_token_on_a_conversation_with_tools(tokenizer_dir):
    tok = Tokenizer.load(tokenizer_dir)
    conv = chat_conversation(random.Random(3), with_tools=True)
    ids, mask = encode_chat(tok, conv["messages"], conv["tools"])
    seq_len = len(ids) + 9
    batch = SFTBatches([(ids, mask, "chat")], seed=0, pad_id=tok.pad_id).next_batch(0, 1, seq_len)
    targets, inputs = batch.targets.tolist(), batch.input_ids.tolist()
    assert inputs[0][:len(ids)] == ids
    for t in range(seq_len):  # target of position t is token t+1 exactly when that token is trained
        if t + 1 < len(ids) and mask[t + 1]:
            assert targets[0][t] == ids[t + 1], t
        else:
            assert targets[0][t] == IGNORE_INDEX, t
    assert inputs[0][len(ids):] == [tok.pad_id] * 9  # the padded tail carries no loss (above)

    trained = tok.decode([i for i, m in zip(ids, mask) if m], skip_special=False)
    untrained = tok.decode([i for i, m in zip(ids, mask) if not m], skip_special=False)
    a, b = json.loads(conv["messages"][2]["tool_calls"][0]["function"]["arguments"]).values()
    # assistant reasoning, the tool call (name + arguments), the answer and its EOS are trained
    for piece in ("I should call add.", '"add"', f'"a": {a}', f"The sum is {a + b}.", "<|end_of_text|>"):
        assert piece in trained, piece
    # system, user, tool result and the template's role markers are not
    for piece in ("Use tools.", f"Add {a} and {b}.", f"RESULT {a + b}", "<|User|>", "<|Assistant|>",
                  "<tool_response>"):
        assert piece in untrained and piece not in trained, piece


def _examples(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [([1] * rng.randint(5, 40), [0] + [1] * 50, "chat") for _ in range(n)]


def test_batches_fill_rows_and_resume_exactly():
    examples = [(list(range(10, 10 + n)), [1] * n, "chat") for n in range(5, 45)]
    src = SFTBatches(examples, seed=1, pad_id=0)
    for _ in range(3):
        b = src.next_batch(0, 3, 48)
        assert b.input_ids.shape == (3, 48)
    state = src.state_dict()
    want = [src.next_batch(0, 3, 48) for _ in range(6)]  # wraps into the next epoch
    assert src.epoch >= 1
    again = SFTBatches(examples, seed=1, pad_id=0)
    again.load_state_dict(state)
    for w in want:
        g = again.next_batch(0, 3, 48)
        assert torch.equal(g.input_ids, w.input_ids) and torch.equal(g.targets, w.targets)
    assert again.tokens_served == src.tokens_served


def test_batches_mark_each_tokens_domain_and_padding_rows_have_none():
    from youtu.data.packing import pack_examples
    from youtu.train.sft import _pad_rows

    examples = [(list(range(10, 10 + n)), [1] * n, ("chat", "agent")[n % 2]) for n in range(5, 30)]
    b = SFTBatches(examples, seed=1, pad_id=0).next_batch(0, 3, 48)
    assert b.input_ids.shape == b.token_domains.shape == (3, 48)
    assert set(b.domain_names) == {"chat", "agent"}
    for i, name in enumerate(b.domain_names):
        assert int((b.token_domains == i).sum()) == b.domain_tokens[name]
    padded = _pad_rows(pack_examples([([1, 2, 3], [1, 1, 1])], 8, 0, domains=["agent"]), 3, 0)
    assert padded.token_domains.tolist() == [[0, 0, 0] + [-1] * 5] + [[-1] * 8] * 2
    assert padded.domain_names == ["agent"] and padded.domain_tokens == {"agent": 3}


def test_heldout_split_is_deterministic():
    ids = [[i, i + 1, i * 7] for i in range(2000)]
    held = [is_heldout(x, 0.1) for x in ids]
    assert held == [is_heldout(x, 0.1) for x in ids]
    assert 0.07 < sum(held) / len(held) < 0.13
    assert not any(is_heldout(x, 0.0) for x in ids)


def test_trajectories_keep_only_verified(tokenizer_dir, tmp_path):
    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS["math"]
    good = env.solve(env.generate(1), random.Random(0))
    bad = env.solve(env.generate(2), random.Random(0)).to_dict()
    bad["id"] += "-x"
    bad["outcome"]["verified"] = False
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "shard_00000.jsonl").write_text(
        json.dumps(good.to_dict()) + "\n" + json.dumps(bad) + "\n")
    tok = Tokenizer.load(tokenizer_dir)
    out = list(encode_trajectories(tok, tmp_path))
    assert len(out) == 1 and out[0][2] == "agent" and sum(out[0][1]) > 0
    assert len(list(encode_trajectories(tok, tmp_path, verified_only=False))) == 2


def test_sft_lowers_heldout_loss(reference_run, make_cfg, data_dir, tmp_path):
    ref_dir, _ = reference_run
    convs = tmp_path / "convs.jsonl"
    rng = random.Random(7)
    convs.write_text("".join(json.dumps(chat_conversation(rng, with_tools=i % 3 == 0)) + "\n"
                             for i in range(60)))
    cfg = make_cfg("--sft.steps=12", "--sft.seq_len=256", "--sft.batch_tokens=1024",
                   "--sft.warmup_steps=2", "--sft.lr=3e-3", "--sft.heldout_fraction=0.15",
                   "--sft.tensorboard=false")
    out = tmp_path / "sft"
    final = run_sft(cfg, init_checkpoint=ref_dir / "stage_agent", out_dir=out, data_dir=data_dir,
                conversations=convs)
    assert final == out / "stage_sft" and (final / "tokenizer.json").is_file()
    held = read_metrics(out / "metrics.jsonl", "heldout/loss/chat")
    assert sorted(held) == [0, 12]
    assert held[12] < held[0] - 0.5, held
    losses = read_metrics(out / "metrics.jsonl", "sft/loss")
    assert sorted(losses) == list(range(1, 13))


def test_sft_without_a_checkpoint_says_what_to_do(make_cfg):
    with pytest.raises(ConfigError, match="run `youtu train` first"):
        main(make_cfg())


def test_trajectories_encode_the_same_in_worker_processes(tokenizer_dir, tmp_path):
    from youtu.agentic.envs import ENVIRONMENTS

    rng = random.Random(0)
    for name in ("math", "tools"):
        env = ENVIRONMENTS[name]
        (tmp_path / name).mkdir()
        for shard in range(2):
            trajs = [env.solve(env.generate(10 * shard + k), rng).to_dict() for k in range(4)]
            (tmp_path / name / f"shard_{shard:05d}.jsonl").write_text(
                "".join(json.dumps(t) + "\n" for t in trajs))
    tok = Tokenizer.load(tokenizer_dir)
    serial = list(encode_trajectories(tok, tmp_path, workers=1))
    assert len(serial) == 16 and all(sum(m) > 0 for _, m, _ in serial)
    assert list(encode_trajectories(tok, tmp_path, workers=3)) == serial


def _killed(*args, **kwargs):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_encoding_worker_is_an_error_not_a_hang(tokenizer_dir, tmp_path, monkeypatch):
    from youtu.agentic import render
    from youtu.errors import RunError

    for shard in range(2):
        (tmp_path / f"shard_{shard}.jsonl").write_text("")
    monkeypatch.setattr(render, "encode_sft_file", _killed)
    tok = Tokenizer.load(tokenizer_dir)
    with pytest.raises(RunError, match="process encoding SFT trajectories died"):
        list(encode_trajectories(tok, tmp_path, workers=2))
