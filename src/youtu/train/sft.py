"""Supervised fine-tuning: `youtu sft` (conversations + agentic trajectories, loss on replies).

    youtu sft configs/tiny.toml                       # from <run_dir>/train's final checkpoint
    youtu sft configs/tiny.toml --sft.init=runs/tiny/train/stage_agent --sft.steps=200

Examples are chat conversations run through the chat template with their loss masks
(`youtu.tokenizer.chat.encode_chat`: 1 on assistant replies, reasoning, tool calls and the
closing EOS; 0 on system, user, tool results and template tokens), packed into rows with
`youtu.data.packing.pack_examples` (a conversation never attends to its row neighbours).
Sources: the `chat` shards of `youtu data prepare` (already encoded with masks), a JSONL of
`{"messages", "tools"}` objects, and verified agentic trajectories (`youtu.agentic.render`).
A fixed fraction, chosen by a hash of each example's tokens, is held out: its loss is reported
before training and at the end. The step, schedule, guard and checkpoints are pretraining's
(`youtu.train.trainer.Trainer`); only the batches differ.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from youtu.data.packing import IGNORE_INDEX, PackedBatch, pack_examples
from youtu.errors import ConfigError, RunError
from youtu.train import checkpoint as ckpt
from youtu.train import parallel, runfolder
from youtu.train.trainer import HeldOut, Trainer
from youtu.train.schedule import WSD, StageSpan

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.tokenizer import Tokenizer
    from youtu.train.config import SFTConfig

logger = logging.getLogger(__name__)

Example = tuple[list[int], list[int], str]
"""(token ids, loss mask, domain)."""

ENCODE_CHUNK = 2048
"""Conversations per parallel tokenizer batch (bounds the texts held at once)."""


# ---- examples ----------------------------------------------------------------------------------


def read_conversations(path: str | Path) -> Iterator[dict]:
    """`{"messages": [...], "tools": [...]}` objects from a JSONL file or every *.jsonl under a
    folder, in sorted order."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no conversations at {path} (a .jsonl file or a folder of them)")
    for file in files:
        with file.open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
                    raise ValueError(f"{file}:{lineno}: expected an object with a 'messages' list")
                yield obj


def encode_conversations(tok: Tokenizer, conversations: Iterable[dict], *, domain: str = "chat",
                         enable_thinking: bool = True) -> Iterator[Example]:
    """Chat-template ids and loss masks of each conversation, encoded `ENCODE_CHUNK` at a time
    in one parallel tokenizer batch (`encode_chats`)."""
    from youtu.tokenizer.chat import encode_chats

    it = iter(conversations)
    while chunk := list(itertools.islice(it, ENCODE_CHUNK)):
        pairs = [(conv["messages"], conv.get("tools") or None) for conv in chunk]
        for ids, mask in encode_chats(tok, pairs, enable_thinking=enable_thinking):
            yield ids, mask, domain


def encode_trajectories(tok: Tokenizer, folder: str | Path, *, verified_only: bool = True,
                        enable_thinking: bool = True, workers: int = 1) -> Iterator[Example]:
    """Rendered agentic trajectories (`youtu.agentic.render.render_sft`) as SFT examples,
    domain 'agent', in file order; unverified ones are skipped when `verified_only`. With
    `workers` > 1 the files are read, rendered and encoded by that many processes (a synth
    folder is one file per `synth.shard_size` trajectories)."""
    from youtu.agentic import render
    from youtu.agentic.trajectory import trajectory_files

    files = trajectory_files(folder)
    workers = min(workers, len(files))
    if workers <= 1:
        for path in files:
            for ids, mask in render.encode_sft_file(tok, path, verified_only, enable_thinking,
                                                    ENCODE_CHUNK):
                yield ids, mask, "agent"
        return
    # forkserver, not fork: this process holds CUDA and threads by now inside `youtu run`;
    # the workers import only the torch-free renderer and tokenizer, and leave the tokenizer's
    # own threads off (the processes are the parallelism; putenv: the Rust side reads the C
    # environment). ProcessPoolExecutor: a killed worker breaks the pool (an error), where
    # multiprocessing.Pool would wait for it forever.
    ctx = multiprocessing.get_context("forkserver")
    job = functools.partial(render.encode_sft_file, tok, verified_only=verified_only,
                            enable_thinking=enable_thinking, chunk=ENCODE_CHUNK)
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=os.putenv,
                                initargs=("TOKENIZERS_PARALLELISM", "false")) as pool:
        try:
            for encoded in pool.map(job, files):
                for ids, mask in encoded:
                    yield ids, mask, "agent"
        except cf.process.BrokenProcessPool as e:
            raise RunError(f"a process encoding SFT trajectories died ({e}; most often out of "
                           f"memory): re-run with fewer processes (YOUTU_SFT_WORKERS=1 encodes "
                           f"in this one)") from e


def encode_workers() -> int:
    """Processes for encoding SFT examples: `YOUTU_SFT_WORKERS`, else this machine's cores
    shared among the local ranks of a torchrun job."""
    if os.environ.get("YOUTU_SFT_WORKERS"):
        return max(1, int(os.environ["YOUTU_SFT_WORKERS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def is_heldout(ids: list[int], fraction: float) -> bool:
    """Deterministic split by a hash of the tokens: the same example lands on the same side
    in every run and on every process."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


# ---- batches ------------------------------------------------------------------------------------


class SFTBatches:
    """Packs examples into fixed-size batches, epoch after epoch in a seeded order.

    Implements the trainer's BatchSource: `next_batch(0, rows, seq_len)` takes examples in
    order while first-fit packing still fits `rows` rows (the one that does not fit opens the
    next batch), and pads the rest; the state is (epoch, position), so resuming is exact.
    """

    def __init__(self, examples: list[Example], seed: int, pad_id: int):
        if not examples:
            raise ValueError("no SFT training examples (all sources were empty or held out)")
        self.examples, self.seed, self.pad_id = examples, seed, pad_id
        self.epoch, self.position = 0, 0
        self._served: dict[str, int] = {}
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    @property
    def tokens_served(self) -> dict[str, int]:
        return dict(self._served)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "served": dict(self._served)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._served = dict(state["served"])
        self._order = self._permutation(self.epoch)

    def _peek(self) -> Example:
        if self.position == len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
            logger.info("SFT epoch %d begins", self.epoch + 1)
        return self.examples[self._order[self.position]]

    def next_batch(self, stage_index: int, batch_size: int, seq_len: int) -> PackedBatch:
        room: list[int] = []  # free tokens per row, mirroring pack_examples' first fit
        chosen: list[Example] = []
        while True:
            ids, mask, domain = self._peek()
            n = min(len(ids), seq_len)
            row = next((r for r, free in enumerate(room) if free >= n), None)
            if row is None:
                if len(room) == batch_size:
                    break
                room.append(seq_len)
                row = len(room) - 1
            room[row] -= n
            chosen.append((ids, mask, domain))
            self.position += 1
            self._served[domain] = self._served.get(domain, 0) + n
        batch = pack_examples([(i, m) for i, m, _ in chosen], seq_len, self.pad_id,
                              domains=[d for _, _, d in chosen])
        return _pad_rows(batch, batch_size, self.pad_id)


def _pad_rows(batch: PackedBatch, rows: int, pad_id: int) -> PackedBatch:
    """`batch` with empty rows (pad ids, no targets, no domain) appended up to `rows`."""
    have, seq_len = batch.input_ids.shape
    extra = rows - have
    assert extra >= 0
    if extra == 0:
        return batch
    fill = lambda v, dtype=torch.long: torch.full((extra, seq_len), v, dtype=dtype)  # noqa: E731
    pos = torch.arange(seq_len).expand(extra, seq_len)
    return PackedBatch(torch.cat([batch.input_ids, fill(pad_id)]),
                       torch.cat([batch.targets, fill(IGNORE_INDEX)]),
                       torch.cat([batch.positions, pos]), torch.cat([batch.doc_ids, fill(0)]),
                       batch.domain_tokens,
                       torch.cat([batch.token_domains, fill(-1, batch.token_domains.dtype)]),
                       batch.domain_names)


def heldout_batches(examples: list[Example], seq_len: int, rows_per_batch: int,
                    pad_id: int) -> dict[str, HeldOut]:
    """All held-out examples packed into batches, per domain (loss only: no bits per byte)."""
    out: dict[str, HeldOut] = {}
    for domain in sorted({d for _, _, d in examples}):
        packed = pack_examples([(i, m) for i, m, d in examples if d == domain], seq_len, pad_id)
        batches = []
        for start in range(0, packed.input_ids.shape[0], rows_per_batch):
            sl = slice(start, start + rows_per_batch)
            batches.append(PackedBatch(packed.input_ids[sl], packed.targets[sl],
                                       packed.positions[sl], packed.doc_ids[sl]))
        out[domain] = HeldOut(batches=batches)
    return out


# ---- the command ------------------------------------------------------------------------------


def sft_schedule(cfg: SFTConfig, steps: int) -> WSD:
    """Warmup, plateau, then decay over the last `decay_fraction` of the steps (the warmup
    shrinks with `steps` when max_steps cuts them)."""
    decay_steps = round(cfg.decay_fraction * steps)
    warmup = round(cfg.warmup_steps * steps / cfg.steps)
    return WSD(peak_lr=cfg.lr, warmup_steps=warmup, decay_start=steps - decay_steps,
               decay_end=steps, decay=cfg.decay, min_lr_ratio=cfg.min_lr_ratio)


def sft(cfg: SFTConfig, *, init_checkpoint: str | Path, out_dir: str | Path,
        data_dir: str | Path | None = None, conversations: str | Path | None = None,
        trajectories_dir: str | Path | None = None, seed: int = 0, device: str = "auto",
        record: object | None = None, verify_checksums: bool = True) -> Path:
    """Fine-tune the model in `init_checkpoint` on conversations and trajectories.

    Args:
        cfg: the `[sft]` section.
        init_checkpoint: HF folder with tokenizer files (a `youtu train` checkpoint).
        out_dir: checkpoints and metrics.
        data_dir: token shards whose `chat` domain (if any) is used.
        conversations: a JSONL file / folder of {"messages", "tools"} objects.
        trajectories_dir: agentic trajectory JSONL folder.
        seed: the run's seed (batch order).
        device: 'auto', 'cpu', 'cuda', ... (`youtu.model.device.resolve_device`).
        record: the config written as run.toml beside every checkpoint; None = none.
        verify_checksums: check each shard's sha256 on opening (`data.verify_checksums`).

    Returns:
        The final checkpoint (`<out_dir>/stage_sft`).
    """
    from youtu.model.hf import load_pretrained
    from youtu.tokenizer import Tokenizer

    init_checkpoint, out_dir = Path(init_checkpoint), Path(out_dir)
    if not (init_checkpoint / "config.json").is_file():
        raise ConfigError(f"sft.init: {init_checkpoint} is not a model folder (no config.json); "
                          "run `youtu train` first or set --sft.init")
    tok = Tokenizer.load(init_checkpoint)
    examples = collect_examples(cfg, tok, data_dir=data_dir, conversations=conversations,
                                trajectories_dir=trajectories_dir,
                                verify_checksums=verify_checksums)
    train_ex = [e for e in examples if not is_heldout(e[0], cfg.heldout_fraction)]
    held_ex = [e for e in examples if is_heldout(e[0], cfg.heldout_fraction)]
    rows = cfg.batch_tokens // cfg.seq_len
    dist = parallel.init_distributed(device)
    try:
        runfolder.lock(out_dir, dist)  # one run per folder: a second one stops here
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temp(out_dir)
            logger.info("SFT: %d training / %d held-out examples, %d steps of %dx%d", len(train_ex),
                        len(held_ex), min(cfg.steps, cfg.max_steps or cfg.steps), rows,
                        cfg.seq_len)
        dist.barrier()
        model = load_pretrained(init_checkpoint)
        model.train()
        trainer = Trainer(cfg, model, dist=dist, out_dir=out_dir, record=record,
                          tokenizer_dir=init_checkpoint, namespace="sft")
        source = SFTBatches(train_ex, seed=seed, pad_id=tok.pad_id)
        steps = min(cfg.steps, cfg.max_steps or cfg.steps)
        span = StageSpan(index=0, name="sft", start_step=0, end_step=steps,
                         seq_len=cfg.seq_len, rows=rows, rope_theta=model.config.rope_theta,
                         lr_phase="decay")
        heldout = heldout_batches(held_ex, cfg.seq_len, max(1, rows), tok.pad_id)
        try:
            latest = runfolder.resume_from(out_dir, resume=cfg.resume, dist=dist,
                                           setting="sft.resume")
            if latest is not None:
                trainer.restore(latest, source)
            elif heldout:  # the baseline the fine-tuning is judged against
                scores = trainer.evaluate(heldout)
                trainer.metrics.log(0, scores)
                if dist.is_main:
                    logger.info("SFT held-out before: %s", _fmt(scores))
            final = trainer.run([span], sft_schedule(cfg, steps), source, plan_total=steps,
                                heldout=heldout)
        finally:
            trainer.close()
        return final
    finally:
        runfolder.unlock(out_dir, dist)
        parallel.shutdown(dist)


def _fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k.split('/', 1)[1]} {v:.3f}" for k, v in sorted(scores.items()))


def collect_examples(cfg: SFTConfig, tok: Tokenizer, *, data_dir: str | Path | None,
                     conversations: str | Path | None,
                     trajectories_dir: str | Path | None,
                     verify_checksums: bool = True) -> list[Example]:
    """Every SFT example of the configured sources, in source order. Examples longer than
    `seq_len` are kept (pack_examples truncates them, logged); examples with no trained token
    inside the first `seq_len` are dropped."""
    examples: list[Example] = []
    if data_dir is not None and (Path(data_dir) / "manifest.json").is_file():
        from youtu.data.shards import ShardSet

        shards = ShardSet.open(data_dir, tok.fingerprint, verify_checksums=verify_checksums)
        if "chat" in shards:
            examples += [(ids, mask, "chat") for ids, mask in shards.examples("chat")]
    if conversations:
        examples += list(encode_conversations(tok, read_conversations(conversations),
                                              enable_thinking=cfg.enable_thinking))
    if trajectories_dir and Path(trajectories_dir).exists():
        examples += list(encode_trajectories(tok, trajectories_dir, verified_only=cfg.verified_only,
                                             enable_thinking=cfg.enable_thinking,
                                             workers=encode_workers()))
    too_long = sum(len(ids) > cfg.seq_len for ids, _, _ in examples)
    if too_long:
        logger.warning("%d SFT example(s) are longer than sft.seq_len=%d and will be truncated",
                       too_long, cfg.seq_len)
    examples = [e for e in examples if any(e[1][1:cfg.seq_len])]
    if not examples:
        raise ConfigError("no SFT examples: give sft.conversations (JSONL of {\"messages\": ...}), "
                          "sft.trajectories (a `youtu synth` folder), or chat shards in the data "
                          "folder")
    return examples


def main(cfg: RunConfig) -> int:
    """`youtu sft`: init from `sft.init` (default: the newest checkpoint of `<run_dir>/train`),
    data from `<data dir>/chat`, `sft.conversations` and `sft.trajectories` (default
    `<run_dir>/synth`), output to `<run_dir>/sft`."""
    init = Path(cfg.sft.init) if cfg.sft.init else ckpt.latest_checkpoint(cfg.run_dir / "train")
    if init is None:
        raise ConfigError(f"no checkpoint under {cfg.run_dir / 'train'}: run `youtu train` first "
                          "or set --sft.init=<checkpoint folder>")
    data_dir = Path(cfg.data.dir) if cfg.data.dir else cfg.run_dir / "data"
    traj = Path(cfg.sft.trajectories) if cfg.sft.trajectories else cfg.run_dir / "synth"
    final = sft(cfg.sft, init_checkpoint=init, out_dir=cfg.run_dir / "sft", data_dir=data_dir,
                conversations=cfg.sft.conversations or None, trajectories_dir=traj,
                seed=cfg.seed, device=cfg.device, record=cfg,
                verify_checksums=cfg.data.verify_checksums)
    if int(os.environ.get("RANK", "0")) == 0:
        print(final)
    return 0
