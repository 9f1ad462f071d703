"""Trainer pieces without a run: AdamW parameter groups (which parameters get weight decay)."""

from __future__ import annotations

import pytest
import torch

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train.config import LoopConfig
from youtu.train.trainer import CausalLMLoss, build_optimizer, param_groups


def _kind(name: str) -> str:
    if name.endswith("embed_tokens.weight"):
        return "embedding"
    if name.endswith("norm.weight"):  # input/post_attention_layernorm, q_a/kv_a_layernorm, norm
        return "norm"
    return "matrix"


@pytest.mark.parametrize("norms, embeddings", [(False, False), (True, False), (False, True),
                                               (True, True)])
def test_param_groups_decay_matrices_and_only_the_configured_norms_and_embeddings(norms, embeddings):
    root = CausalLMLoss(YoutuForCausalLM(ModelConfig.tiny(vocab_size=512)), chunk_tokens=0)
    cfg = LoopConfig(weight_decay=0.1, weight_decay_norms=norms, weight_decay_embeddings=embeddings)
    groups = param_groups(root, cfg)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    names = dict(root.named_parameters())  # the tied lm_head is the embedding: listed once
    assert len(decay_of) == len(names) == sum(len(g["params"]) for g in groups)
    kinds = {name: _kind(name) for name in names}
    assert {"embedding", "norm", "matrix"} == set(kinds.values())
    want = {"matrix": 0.1, "norm": 0.1 if norms else 0.0, "embedding": 0.1 if embeddings else 0.0}
    for name, p in names.items():
        assert decay_of[id(p)] == want[kinds[name]], name
        if kinds[name] == "matrix":
            assert p.ndim == 2, name
    # one group per distinct decay value, no empty group
    assert sorted(g["weight_decay"] for g in groups) == sorted(
        {0.1} | ({0.0} if not (norms and embeddings) else set()))


def test_optimizer_applies_no_decay_to_norms():
    """A zero-gradient AdamW step leaves a norm gain at 1 but shrinks a matrix by lr * wd."""
    model = YoutuForCausalLM(ModelConfig.tiny(vocab_size=512))
    model.init_weights()
    root = CausalLMLoss(model, chunk_tokens=0)
    opt = build_optimizer(root, LoopConfig(lr=0.5, weight_decay=0.1), torch.device("cpu"))
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    for p in root.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model.model.norm.weight, torch.ones_like(model.model.norm.weight))
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight, before * (1 - 0.5 * 0.1))


def test_heldout_eval_compiles_no_graph(make_cfg, tmp_path):
    # Held-out eval under no_grad, with a short last batch, compiled two more graphs per block
    # and loss kernel (a static, then a dynamic one) in every run; it now runs eagerly.
    from types import SimpleNamespace

    from torch._dynamo.utils import counters

    from youtu.train.loop import build_model
    from youtu.train.parallel import Dist
    from youtu.train.trainer import HeldOut, Trainer

    torch._dynamo.reset()
    cfg = make_cfg()
    trainer = Trainer(cfg.train, build_model(cfg.model, cfg.seed), dist=Dist(), out_dir=tmp_path)
    for block in trainer.model.model.layers:
        block.compile(backend="eager")  # dynamo's graph count without inductor's CPU compile time
    vocab = cfg.model.vocab_size

    def batch(rows: int, seq: int):
        ids = torch.randint(0, vocab, (rows, seq))
        return SimpleNamespace(input_ids=ids, targets=ids, doc_ids=torch.zeros_like(ids),
                               positions=torch.arange(seq).expand(rows, seq))

    train = batch(4, 32)
    loss, _ = trainer.root(train.input_ids, train.targets, train.positions, None)
    loss.backward()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    out = trainer.evaluate({"stem": HeldOut(batches=[batch(4, 32), batch(1, 32)])})
    assert counters["stats"]["unique_graphs"] == graphs
    assert out["heldout/loss/stem"] > 0
    trainer.close()
    torch._dynamo.reset()
