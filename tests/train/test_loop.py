"""The training loop: exact kill-and-resume, stage selection, RoPE changes, gradient
accumulation, the NaN/spike guard, the golden loss curve."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from youtu.config import ConfigError
from youtu.data.mixture import CurriculumSampler
from youtu.data.shards import ShardSet
from youtu.tokenizer import Tokenizer
from youtu.train.checkpoint import latest_checkpoint, read_marker
from youtu.train.loop import Trainer, TrainingDiverged, build_model, train
from youtu.train.metrics import read_metrics
from youtu.train.parallel import Dist
from youtu.train.schedule import plan_stages

GOLDEN = Path(__file__).with_name("golden_tiny_losses.json")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def test_kill_and_resume_is_bit_identical(reference_run, tiny_toml, tmp_path, data_dir, tokenizer_dir):
    ref_dir, ref_losses = reference_run
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "killed.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "youtu", "train", str(tiny_toml),
                                 f"--out_dir={out}"], env=env, stdout=subprocess.DEVNULL, stderr=err)
        ckpts = out / "t" / "train"
        deadline = time.time() + 120
        while latest_checkpoint(ckpts) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed (rc {proc.returncode}): {log.read_text()[-2000:]}")
    killed_at = read_marker(latest_checkpoint(ckpts))["step"]
    assert killed_at < 16

    from youtu.config import load_config

    cfg = load_config(tiny_toml, [f"--out_dir={out}"])
    final = train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")
    losses = read_metrics(cfg.run_dir / "train" / "metrics.jsonl", "train/loss")
    assert losses == ref_losses  # exact: every step, before and after the kill
    _assert_same_weights(final, ref_dir / "stage_agent")


def test_golden_loss_curve(reference_run):
    """The tiny run's losses, stored once from this code (torch 2.13 CPU, fp32, 1 thread).
    A refactor of the trainer must reproduce them exactly. They also depend on the model's
    init, the tokenizer trainer and the data sampler: when one of those changes on purpose,
    regenerate with YOUTU_REGEN_GOLDEN=1 and say so in the commit."""
    _, losses = reference_run
    if os.environ.get("YOUTU_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps({"torch": torch.__version__,
                                      "losses": {str(k): v for k, v in sorted(losses.items())}},
                                     indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    expected = {int(k): v for k, v in golden["losses"].items()}
    if golden["torch"] == torch.__version__:
        assert losses == expected
    else:  # another torch build may pick other kernels: close, not bitwise
        assert losses.keys() == expected.keys()
        for k in expected:
            assert losses[k] == pytest.approx(expected[k], rel=1e-4), k


def test_loss_falls_through_the_stages(reference_run):
    ref_dir, losses = reference_run
    metrics = ref_dir / "metrics.jsonl"
    assert sorted(losses) == list(range(1, 17))
    assert losses[16] < losses[1] - 1.0
    for domain in ("commonsense", "stem", "code", "agent"):
        bpb = read_metrics(metrics, f"heldout/bpb/{domain}")
        assert sorted(bpb) == [4, 8, 12, 16]  # scored at every stage end
        assert bpb[16] < bpb[4], (domain, bpb)
    tokens = read_metrics(metrics, "data/tokens/agent")
    assert 8 not in tokens and tokens[16] > 0  # agent data enters in stage 3


def test_stage_checkpoints_carry_rope_theta(reference_run):
    from youtu.config import load_config
    from youtu.model.hf import read_config

    ref_dir, _ = reference_run
    assert read_config(ref_dir / "stage_stem").rope_theta == 1e4
    assert read_config(ref_dir / "stage_general").rope_theta == 4e4
    assert read_config(ref_dir / "stage_agent").rope_theta == 4e4
    # run.toml is the config as given, not the stage-modified model
    assert load_config(ref_dir / "stage_agent" / "run.toml").model.rope_theta == 1e4


def test_run_stages_from_a_stage_checkpoint(reference_run, make_cfg, data_dir, tokenizer_dir):
    ref_dir, ref_losses = reference_run
    cfg = make_cfg('--train.run_stages=["general", "agent"]', f"--train.init={ref_dir / 'stage_stem'}")
    final = train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")
    losses = read_metrics(cfg.run_dir / "train" / "metrics.jsonl", "train/loss")
    assert losses == {k: v for k, v in ref_losses.items() if k > 8}
    _assert_same_weights(final, ref_dir / "stage_agent")


def test_run_stages_needs_the_previous_stage(make_cfg, data_dir, tokenizer_dir):
    cfg = make_cfg('--train.run_stages=["general"]')
    with pytest.raises(ConfigError, match="stage_stem.*does not exist"):
        train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")


def _trainer(cfg, data_dir, out_dir):
    tok = Tokenizer.load(cfg.tokenizer.path)
    sampler = CurriculumSampler(ShardSet.open(data_dir, tok.fingerprint), cfg.train.stages, seed=0)
    plan = plan_stages(cfg.train.stages, cfg.model.rope_theta)
    return Trainer(cfg.train, build_model(cfg), dist=Dist(), out_dir=out_dir), sampler, plan


def test_gradient_accumulation_matches_one_batch(make_cfg, data_dir, tmp_path):
    results = []
    for micro in (0, 32):  # 4 rows of 32 in one forward, or 4 forwards of one row
        cfg = make_cfg(f"--train.micro_batch_tokens={micro}")
        trainer, sampler, plan = _trainer(cfg, data_dir, tmp_path / str(micro))
        stats = trainer.train_step(sampler.next_batch(0, plan[0].rows, plan[0].seq_len), 1e-2, plan[0])
        results.append((stats, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}))
        trainer.close()
    (a, wa), (b, wb) = results
    assert a.loss == pytest.approx(b.loss, rel=1e-6)
    assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-5)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_nan_step_is_skipped_counted_and_stops_the_run(make_cfg, data_dir, tmp_path):
    cfg = make_cfg("--train.max_skipped_steps=1")
    trainer, sampler, plan = _trainer(cfg, data_dir, tmp_path)
    span = plan[0]
    batch = sampler.next_batch(0, span.rows, span.seq_len)
    poisoned = int(batch.input_ids[0, 5])
    with torch.no_grad():
        trainer.model.model.embed_tokens.weight[poisoned] = float("nan")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    stats = trainer.train_step(batch, 1e-2, span)
    assert stats.skipped and math.isnan(stats.loss)
    assert trainer.guard["skipped"] == 1 and trainer.step == 1
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]) or torch.isnan(v).any(), f"{k} was updated by a skipped step"
    assert all(s["exp_avg"].abs().sum() == 0 for s in trainer.optimizer.state.values()) or not trainer.optimizer.state
    with pytest.raises(TrainingDiverged, match="max_skipped_steps=1"):
        trainer.train_step(batch, 1e-2, span)
    trainer.close()


def test_spike_guard_arms_after_history(make_cfg, tmp_path, data_dir):
    cfg = make_cfg("--train.spike_factor=2.0")
    trainer, _, _ = _trainer(cfg, data_dir, tmp_path)
    for _ in range(5):
        assert trainer._guard(3.0, 1.0) is False
    assert trainer._guard(9.0, 1.0) is False  # 3x, but fewer than 20 steps of history: accepted
    for _ in range(25):
        assert trainer._guard(3.0, 1.0) is False
    assert trainer._guard(9.0, 1.0) is True  # > 2x the recent ~3.0: skipped
    assert trainer._guard(5.0, 1.0) is False
    assert trainer._guard(2.0, float("inf")) is True
    assert trainer.guard["skipped"] == 2
    trainer.close()


def test_seq_len_beyond_the_model_is_an_error(make_cfg, data_dir, tokenizer_dir):
    cfg = make_cfg("--model.max_position_embeddings=48")
    with pytest.raises(ValueError, match="seq_len 64 exceeds the model's max_position_embeddings 48"):
        train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")


def test_vocab_mismatch_is_an_error(make_cfg, data_dir, tokenizer_dir):
    cfg = make_cfg("--model.vocab_size=1024", "--model.bos_token_id=768",
                   "--model.eos_token_id=769", "--model.pad_token_id=769")
    with pytest.raises(ConfigError, match="has 576 ids but model.vocab_size is 1024"):
        train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")
