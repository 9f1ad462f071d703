"""Curriculum pre-training and mid-training: `youtu train` (one process or torchrun + FSDP2).

    youtu train configs/tiny.toml                                   # all four stages
    youtu train configs/tiny.toml --train.run_stages='["agent"]'    # one stage, continuing
    torchrun --nproc-per-node 8 -m youtu train configs/youtu-2b.toml

One command runs every stage of `train.stages` in order: the stage plan (schedule.py) turns the
stages' token budgets into step ranges, the WSD schedule is a function of the global step, and
at each stage boundary the sequence length, the data mix, the RoPE base and the YaRN scaling
(`yarn_factor`) change in place (no restart). Checkpoints are written every `checkpoint_every` steps and at each stage end;
a rerun with the same output folder resumes from the newest one exactly (bit-identical losses
on CPU), and `run_stages` picks a contiguous part of the curriculum, starting from `init` or the
previous stage's checkpoint. The rerun may use another number of processes (8 GPUs -> 1, 1 -> 4,
...): the checkpoint is resharded on load, and the losses follow the uninterrupted run up to fp32
summation order (the data order does not depend on the number of processes).

The step itself, its guard, metrics and checkpoints are `youtu.train.trainer.Trainer`, shared
with SFT (sft.py), which differs only in where its batches come from.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from youtu.errors import ConfigError
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train import checkpoint as ckpt
from youtu.train import parallel, runfolder
from youtu.train.config import LoopConfig, TrainConfig
from youtu.train.schedule import StageSpan, plan_stages, select_stages, total_steps, wsd_for_plan
from youtu.train.trainer import BatchSource, HeldOut, Trainer

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)

EvalHook = Callable[[Path, int], dict[str, float]]
"""eval_hook(checkpoint folder, step) -> scalars to log (`eval/<key>`)."""


def build_model(cfg: ModelConfig, seed: int) -> YoutuForCausalLM:
    """The model of `cfg`, initialised from `seed` (identical on every process)."""
    torch.manual_seed(seed)
    # A copy: stages change the model's RoPE settings in place, run.toml must keep the original.
    model = YoutuForCausalLM(copy.deepcopy(cfg))
    model.init_weights()
    return model


def _start_state(trainer: Trainer, source: BatchSource, spans: list[StageSpan],
                 plan: list[StageSpan], out_dir: Path, init: str | Path | None,
                 weights_only: bool) -> None:
    """Put the trainer where this invocation starts: the newest checkpoint in `out_dir` (exact
    resume), else `init` (full state or weights only), else the previous stage's end checkpoint
    when starting mid-curriculum, else step 0 of the first selected stage."""
    first = spans[0]
    latest = runfolder.resume_from(out_dir, resume=trainer.cfg.resume, dist=trainer.dist)
    if latest is not None and ckpt.read_marker(latest)["step"] >= first.start_step:
        trainer.restore(latest, source)
    elif init:
        init = Path(init)
        if not init.is_dir():
            raise ConfigError(f"train.init: {init} is not a checkpoint folder")
        if (init / ckpt.STATE_FILE).is_file() and not weights_only:
            trainer.restore(init, source)
        else:
            logger.info("initial weights from %s (fresh optimizer and data cursor)", init)
            ckpt.load_full_model_state(trainer.model, ckpt.load_weights(init), trainer.dist)
            trainer.step = first.start_step
    elif first.index > 0:
        prev = out_dir / ckpt.stage_dirname(plan[first.index - 1].name)
        if ckpt.read_marker(prev) is None:
            raise ConfigError(f"run_stages starts at stage {first.name!r}, but {prev} (the end of "
                              f"stage {plan[first.index - 1].name!r}) does not exist; run the "
                              "earlier stages first or give --train.init=<checkpoint>")
        trainer.restore(prev, source)
    if not first.start_step <= trainer.step <= spans[-1].end_step:
        raise ConfigError(f"the starting checkpoint is at step {trainer.step}, outside the "
                          f"selected stages {[s.name for s in spans]} (steps {first.start_step}.."
                          f"{spans[-1].end_step}); pick run_stages that continue from it, or "
                          "set train.init_weights_only=true")


def train(cfg: TrainConfig, model_cfg: ModelConfig, data_dir: str | Path,
          tokenizer_dir: str | Path, out_dir: str | Path, *, seed: int = 0, device: str = "auto",
          init: str | Path | None = None, eval_hook: EvalHook | None = None,
          record: object | None = None, verify_checksums: bool = True) -> Path:
    """Run the curriculum stages of `cfg` (all, or `run_stages`) and return the final checkpoint.

    Args:
        cfg: the `[train]` section.
        model_cfg: the `[model]` section (the model is built from it and `seed`).
        data_dir: token shards (`youtu data prepare`), built with the tokenizer below.
        tokenizer_dir: tokenizer folder (its files are copied into every checkpoint).
        out_dir: checkpoints, metrics.jsonl, TensorBoard events.
        seed: the run's seed (weights, data order).
        device: 'auto', 'cpu', 'cuda', ... (`youtu.model.device.resolve_device`).
        init: checkpoint to start from (overrides `cfg.init`).
        eval_hook: called as eval_hook(checkpoint, step) on stage-end checkpoints (and every
            `cfg.eval_hook_every` steps); returns scalars to log. The caller builds it (the
            `youtu train` command and the pipeline pass youtu.eval's): training imports no
            evaluation code.
        record: the config written as run.toml beside every checkpoint; None = none.
        verify_checksums: check each shard's sha256 on opening (`data.verify_checksums`).

    Returns:
        The last checkpoint written (the last selected stage's end, or the `stop_after` one).
    """
    from youtu.data.mixture import CurriculumSampler
    from youtu.data.shards import ShardSet
    from youtu.tokenizer import Tokenizer

    out_dir = Path(out_dir)
    dist = parallel.init_distributed(device)
    try:
        runfolder.lock(out_dir, dist)  # one run per folder: a second one stops here
        tok = Tokenizer.load(tokenizer_dir)
        if tok.vocab_size != model_cfg.vocab_size:
            raise ConfigError(f"the tokenizer in {tokenizer_dir} has {tok.vocab_size} ids but "
                              f"model.vocab_size is {model_cfg.vocab_size}; make them agree")
        shards = ShardSet.open(data_dir, tok.fingerprint, verify_checksums=verify_checksums)
        rope = {"base_rope_theta": model_cfg.rope_theta,
                "base_rope_scaling": model_cfg.rope_scaling}
        full = total_steps(plan_stages(cfg.stages, **rope))
        plan = plan_stages(cfg.stages, **rope, max_steps=cfg.max_steps)
        spans = select_stages(plan, cfg.run_stages)
        # A shrunk plan (max_steps) shrinks its warmup alike, or it would run into the decay.
        warmup = round(cfg.warmup_steps * total_steps(plan) / full)
        schedule = wsd_for_plan(plan, peak_lr=cfg.lr, warmup_steps=warmup,
                                decay=cfg.decay, min_lr_ratio=cfg.min_lr_ratio)
        # One global stream on every process (see BatchSource), not rank-strided streams.
        sampler = CurriculumSampler(shards, cfg.stages, seed=seed)
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temp(out_dir)
            logger.info("plan: %s", ", ".join(
                f"{s.name} steps {s.start_step}-{s.end_step} ({s.rows}x{s.seq_len}, "
                f"theta {s.rope_theta:g}"
                + (f", yarn x{s.yarn_factor:g} of {s.yarn_original_seq_len}"
                   if s.yarn_factor > 1 else "")
                + f", {s.lr_phase})" for s in plan))
        dist.barrier()
        trainer = Trainer(cfg, build_model(model_cfg, seed), dist=dist, out_dir=out_dir,
                          record=record, tokenizer_dir=tokenizer_dir, namespace="train")
        try:
            _start_state(trainer, sampler, spans, plan, out_dir, init or cfg.init,
                         cfg.init_weights_only)
            heldout = {}
            held_dir = Path(cfg.heldout_dir) if cfg.heldout_dir else Path(data_dir) / "heldout"
            if cfg.heldout_tokens and (held_dir / "manifest.json").is_file():
                held = ShardSet.open(held_dir, tok.fingerprint, verify_checksums=verify_checksums)
                heldout = heldout_sets(held, tok,
                                       tokens=cfg.heldout_tokens, seq_len=spans[0].seq_len,
                                       rows_per_batch=_eval_rows(cfg, spans[0].seq_len))
            elif cfg.heldout_tokens and dist.is_main:
                logger.warning("no held-out shards at %s: held-out loss / bits per byte are not "
                               "reported (set train.heldout_dir)", held_dir)
            final = trainer.run(spans, schedule, sampler, plan_total=total_steps(plan),
                                heldout=heldout, eval_hook=eval_hook,
                                eval_hook_every=cfg.eval_hook_every)
        finally:
            trainer.close()
        if final is None:
            final = ckpt.latest_checkpoint(out_dir)
        return final
    finally:
        runfolder.unlock(out_dir, dist)
        parallel.shutdown(dist)


def _eval_rows(cfg: LoopConfig, seq_len: int) -> int:
    return max(1, (cfg.micro_batch_tokens or 16384) // seq_len)


def token_byte_lengths(tok) -> torch.Tensor:
    """[V] UTF-8 bytes each token stands for; 0 for special tokens (bits per byte skips them)."""
    return torch.tensor([0 if tok.is_special(i) else len(tok.token_bytes(i))
                         for i in range(tok.vocab_size)], dtype=torch.long)


def heldout_sets(shards, tok, *, tokens: int, seq_len: int, rows_per_batch: int,
                 domains: Sequence[str] | None = None) -> dict[str, HeldOut]:
    """Held-out rows per domain (packed like training rows), with byte counts for bits/byte.

    Args:
        shards: a ShardSet kept out of training.
        tok: the tokenizer (token byte lengths).
        tokens: held-out tokens per domain (fewer when the domain has fewer).
        seq_len: row length.
        rows_per_batch: rows per forward.
        domains: domains to score; None = all of `shards`.
    """
    from youtu.data.config import StageConfig
    from youtu.data.mixture import CurriculumSampler

    nbytes = token_byte_lengths(tok)
    out = {}
    for domain in domains or shards.domains:
        if domain not in shards:
            continue
        rows = min(-(-tokens // seq_len), shards.num_tokens(domain) // seq_len)
        if rows < 1:
            continue
        stage = StageConfig(name=f"heldout_{domain}", tokens=rows * seq_len, seq_len=seq_len,
                            batch_tokens=rows * seq_len, mix={domain: 1.0})
        sampler = CurriculumSampler(shards, [stage], seed=0)
        batches = [sampler.next_batch(0, min(rows_per_batch, rows - i), seq_len)
                   for i in range(0, rows, rows_per_batch)]
        scored = sum(int(nbytes[b.targets.clamp(min=0)][b.targets >= 0].sum()) for b in batches)
        out[domain] = HeldOut(batches=batches, n_bytes=scored, token_bytes=nbytes)
    return out


def main(cfg: RunConfig, eval_hook: EvalHook | None = None) -> int:
    """`youtu train`: data from `data.dir` (default `<run_dir>/data`), tokenizer from
    `tokenizer.path` (default `<run_dir>/tokenizer`), checkpoints to `<run_dir>/train`.
    `eval_hook`: the evaluator `train.eval_hook` asks for (`youtu.commands.train_main` passes
    youtu.eval's)."""
    if cfg.train.eval_hook and eval_hook is None:
        raise ConfigError("train.eval_hook = true needs an evaluator: run `youtu train` (it "
                          "passes youtu.eval's), or pass eval_hook= to youtu.train.loop.main")
    data_dir = Path(cfg.data.dir) if cfg.data.dir else cfg.run_dir / "data"
    tokenizer_dir = Path(cfg.tokenizer.path) if cfg.tokenizer.path else cfg.run_dir / "tokenizer"
    final = train(cfg.train, cfg.model, data_dir, tokenizer_dir, cfg.run_dir / "train",
                  seed=cfg.seed, device=cfg.device, eval_hook=eval_hook, record=cfg,
                  verify_checksums=cfg.data.verify_checksums)
    if int(os.environ.get("RANK", "0")) == 0:
        print(final)
    return 0
