"""Checkpoints: HF folder + trainer state + run.toml, atomic writes, keep-last-K, latest."""

from __future__ import annotations

import shutil

import pytest
import torch

from youtu.config import load_config
from youtu.model.hf import load_pretrained
from youtu.tokenizer import Tokenizer
from youtu.train import checkpoint as ckpt

from .train_helpers import run_train


def test_checkpoint_is_a_loadable_hf_folder(reference_run):
    ref_dir, _ = reference_run
    folder = ref_dir / "stage_agent"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "run.toml", "trainer_state.pt", "checkpoint.json"} <= names
    model = load_pretrained(folder)
    assert model.config.vocab_size == Tokenizer.load(folder).vocab_size == 576
    assert load_config(folder / "run.toml").train.stages[3].name == "agent"
    state = ckpt.load_trainer_state(folder)
    assert state["step"] == 16 and state["stage"] == "agent" and state["world_size"] == 1
    assert {"sampler", "rng"} <= state["ranks"][0].keys() and "optimizer" in state
    assert ckpt.read_marker(folder)["step"] == 16


def test_keep_last_prunes_periodic_but_not_stage_checkpoints(reference_run):
    ref_dir, _ = reference_run
    names = sorted(p.name for p in ref_dir.iterdir() if p.is_dir())
    # 16 steps, checkpoint_every=4 coincides with every stage end: only stage checkpoints
    assert names == ["stage_agent", "stage_commonsense", "stage_general", "stage_stem"]


def _fake_checkpoint(folder, step):
    folder.mkdir(parents=True)
    for name in (ckpt.STATE_FILE, "config.json", "model.safetensors"):
        (folder / name).write_bytes(b"x")
    (folder / ckpt.MARKER).write_text(f'{{"step": {step}, "stage": "s"}}')


def test_latest_ignores_half_written_folders(tmp_path):
    _fake_checkpoint(tmp_path / "step_00000002", 2)
    _fake_checkpoint(tmp_path / "step_00000004", 4)
    _fake_checkpoint(tmp_path / ".tmp-step_00000006", 6)  # a write in progress
    (tmp_path / "step_00000008").mkdir()  # files copied, no marker
    (tmp_path / "step_00000008" / ckpt.STATE_FILE).write_bytes(b"x")
    broken = tmp_path / "step_00000010"
    broken.mkdir()
    (broken / ckpt.MARKER).write_text('{"step": 1')  # truncated marker
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step_00000004"
    _fake_checkpoint(tmp_path / "stage_x", 4)
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "stage_x"  # same step: the kept one
    assert ckpt.prune_checkpoints(tmp_path, keep_last=1) == [tmp_path / "step_00000002"]
    assert ckpt.latest_checkpoint(tmp_path / "missing") is None


def test_interrupted_write_is_ignored_and_the_previous_checkpoint_used(
        reference_run, make_cfg, data_dir, tokenizer_dir, monkeypatch):
    ref_dir, ref_losses = reference_run
    cfg = make_cfg()
    out = cfg.run_dir / "train"
    out.mkdir(parents=True)
    shutil.copytree(ref_dir / "stage_stem", out / "stage_stem")

    real_save = torch.save

    def crash(obj, path, *a, **kw):  # dies after the HF files, before trainer state + marker
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, data_dir, tokenizer_dir, out)
    partial = out / ".tmp-stage_general"
    assert (partial / "model.safetensors").is_file() and not (partial / ckpt.MARKER).exists()
    assert ckpt.latest_checkpoint(out) == out / "stage_stem"

    monkeypatch.setattr(ckpt.torch, "save", real_save)
    final = run_train(cfg, data_dir, tokenizer_dir, out)  # resumes from stage_stem, cleans .tmp-
    assert not partial.exists()
    assert final == out / "stage_agent"
    from youtu.train.metrics import read_metrics

    losses = read_metrics(out / "metrics.jsonl", "train/loss")
    assert losses == {k: v for k, v in ref_losses.items() if k > 8}


def test_multi_process_checkpoint_without_its_shards_is_refused(reference_run, tmp_path):
    # Another process count is fine (test_reshard.py); a torchrun checkpoint copied without its
    # DCP shards is not.
    ref_dir, _ = reference_run
    blob = ckpt.load_trainer_state(ref_dir / "stage_stem")
    blob["world_size"] = 2
    folder = tmp_path / "c"
    shutil.copytree(ref_dir / "stage_stem", folder)
    torch.save(blob, folder / ckpt.STATE_FILE)
    from youtu.model import YoutuForCausalLM
    from youtu.train.parallel import Dist

    model = YoutuForCausalLM(load_pretrained(folder).config)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="written by 2 processes but its DCP shards"):
        ckpt.restore_checkpoint(folder, model=model, root=model, optimizer=opt, dist=Dist())
