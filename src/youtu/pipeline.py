"""`youtu run`: the whole Youtu-LLM recipe as resumable steps, and the agentic ablation.

    youtu run                          # configs/tiny.toml: toy scale, CPU, minutes
    youtu run configs/small.toml       # one GPU
    youtu run --train.max_steps=20     # a shortened run (what CI does), same code path
    torchrun --nproc_per_node 8 -m youtu run configs/youtu-2b.toml    # many GPUs, FSDP2

Steps (each skipped when its output exists and its config hash is unchanged; training resumes
from its newest checkpoint when interrupted; under torchrun every process trains, rank 0 alone
runs the other steps):

    synth -> tokenizer -> data -> pretrain (stages 1..n-1) -> agent stage | ablation stage
          -> sft -> eval (3 checkpoints) -> report

The ablation is the paper's: the last (agentic mid-training) stage is run twice from the same
stage n-1 checkpoint, once as configured and once with its `agent` share replaced by the other
domains in their configured proportions (same token budget, same schedule). Both base models and
the SFT model are scored by the same evaluation; the report puts them side by side.

Layout of `runs/<name>/`: `run.toml`, `pipeline.json` (step manifest), `synth/`, `tokenizer/`,
`data/`, `train/` (stages 1..n-1), `train_agent/` and `train_noagent/` (the two last-stage arms),
`sft/`, `eval/<label>/`,
`report/report.md` (+ PNGs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from youtu.commands import AGENT, agent_documents, eval_hook, train_tokenizer
from youtu.config import RunConfig
from youtu.configlib import config_hash, save_config, to_dict
from youtu.errors import ConfigError

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# step manifest


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temp file + rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class StepRunner:
    """Runs named steps in order against `pipeline.json`, the manifest of steps.

    A step is skipped when the manifest holds it as done with the same key (a hash of everything
    it depends on) and its outputs exist. A step is recorded as started before it runs, so an
    interrupted step runs again with the same key and resumes from what it left (training
    continues from its newest checkpoint); a step whose key changed first deletes its `clear`
    folders, so nothing made under the old config is resumed by mistake.

    Under torchrun (world_size > 1) rank 0 owns the manifest and the folders: it runs the
    single-process steps while the other ranks wait for the manifest to mark them done (a file
    poll, so a data step of hours hits no collective timeout), and every rank runs the steps
    marked `everywhere` (training), starting once rank 0 has recorded the step as started.
    Rank 0 stamps what it writes with `launch` (the torchrun run id and restart count), so the
    other ranks never mistake an entry of an earlier launch for this one's."""

    def __init__(self, manifest: Path, total: int, rank: int = 0, launch: str = "",
                 poll_s: float = 1.0):
        self.manifest = Path(manifest)
        self.total = total
        self.rank = rank
        self.launch = launch
        self.poll_s = poll_s
        self.index = 0
        self.started = time.time()
        self.state = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.manifest.exists():
            return {}
        try:
            return json.loads(self.manifest.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.manifest} is corrupt ({e}); delete it to re-run every "
                              "step") from e

    def _save(self) -> None:
        atomic_write_text(self.manifest, json.dumps(self.state, indent=2, default=str) + "\n")

    def _wait_for_rank0(self, label: str, name: str, key: str, done: bool) -> dict[str, Any]:
        """Poll the manifest until rank 0 has started (or finished, with `done`) step `name`."""
        t0 = last_log = time.time()
        while True:
            entry = self._load().get(name)
            if (entry and entry["key"] == key and entry.get("launch") == self.launch
                    and (entry.get("done", True) or not done)):
                return entry
            if time.time() - last_log > 60:
                last_log = time.time()
                logger.info("%s: rank %d waiting for rank 0 (%.0fs)", label, self.rank,
                            time.time() - t0)
            time.sleep(self.poll_s)

    def run(self, name: str, key: str, fn: Callable[[], dict[str, Any] | None],
            outputs: tuple[Path, ...] = (), clear: tuple[Path, ...] = (),
            everywhere: bool = False) -> dict[str, Any]:
        """Run `fn` unless step `name` finished before with this `key` and its outputs exist.
        `everywhere`: every rank runs `fn` (a distributed step), not only rank 0."""
        self.index += 1
        label = f"[{self.index}/{self.total}] {name}"
        entry = self.state.get(name)
        if (entry and entry["key"] == key and entry.get("done", True)
                and all(Path(p).exists() for p in outputs)):
            logger.info("%s: up to date, skipped", label)
            return entry["result"]
        if self.rank != 0:
            entry = self._wait_for_rank0(label, name, key, done=not everywhere)
            if not everywhere:
                self.state[name] = entry
                return entry["result"]
            result = fn() or {}
            self.state[name] = {"key": key, "done": True, "result": result}
            return result
        if entry and entry["key"] != key:
            for path in clear:
                if Path(path).exists():
                    logger.info("%s: config changed, removing %s", label, path)
                    shutil.rmtree(path)
        logger.info("%s: running (pipeline at %.0fs)", label, time.time() - self.started)
        self.state[name] = {"key": key, "done": False, "launch": self.launch}
        self._save()
        t0 = time.time()
        result = fn() or {}
        seconds = time.time() - t0
        self.state[name] = {"key": key, "done": True, "seconds": round(seconds, 2),
                            "result": result, "outputs": [str(p) for p in outputs],
                            "launch": self.launch}
        self._save()
        logger.info("%s: done in %.1fs", label, seconds)
        return result


# ---------------------------------------------------------------------------------------------
# the ablation


def without_domain(cfg: RunConfig, domain: str = AGENT) -> RunConfig:
    """`cfg` with `domain` removed from the last stage's mix, its weight given to the other
    domains in proportion (same stage token budget). This is the "no agentic mid-training" arm."""
    stages = list(cfg.train.stages)
    last = stages[-1]
    rest = {d: w for d, w in last.mix.items() if d != domain}
    if domain not in last.mix or not rest:
        raise ConfigError(f"the last stage '{last.name}' must mix '{domain}' with other domains "
                         f"for the ablation; its mix is {last.mix}")
    total = sum(rest.values())
    stages[-1] = dataclasses.replace(last, mix={d: w / total for d, w in rest.items()})
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stages=stages))


def _with_stages(cfg: RunConfig, names: list[str]) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_stages=names))


# ---------------------------------------------------------------------------------------------
# steps


def _synth(cfg: RunConfig, out: Path) -> dict[str, Any]:
    from youtu.agentic.synthesize import synthesize

    stats = synthesize(cfg.synth, out)
    return {"trajectories": stats.get("kept", stats.get("total")), "stats": str(out / "stats.json")}


def _tokenizer(cfg: RunConfig, synth_dir: Path, out: Path) -> dict[str, Any]:
    tok = train_tokenizer(cfg, out, synth_dir=synth_dir)
    return {"fingerprint": tok.fingerprint, "vocab_size": tok.vocab_size}


def _data(cfg: RunConfig, tokenizer_dir: Path, synth_dir: Path, out: Path) -> dict[str, Any]:
    from youtu.data.prepare import prepare
    from youtu.eval.runner import decontamination_texts
    from youtu.tokenizer import Tokenizer

    manifest = prepare(cfg.data, Tokenizer.load(tokenizer_dir), out,
                       extra=agent_documents(synth_dir),
                       eval_texts=decontamination_texts(cfg.eval))
    return {"tokens": manifest["totals"]["tokens"]}


def _train(cfg: RunConfig, data_dir: Path, tokenizer_dir: Path, out: Path,
           init: Path | None = None) -> dict[str, Any]:
    from youtu.train.loop import train

    return _checkpoint_result(train(cfg.train, cfg.model, data_dir, tokenizer_dir, out,
                                    seed=cfg.seed, device=cfg.device, init=init,
                                    eval_hook=eval_hook(cfg), record=cfg,
                                    verify_checksums=cfg.data.verify_checksums))


def _sft(cfg: RunConfig, init: Path, data_dir: Path, synth_dir: Path, out: Path) -> dict[str, Any]:
    from youtu.train.sft import sft

    return _checkpoint_result(sft(cfg.sft, init_checkpoint=init, out_dir=out, data_dir=data_dir,
                                  trajectories_dir=synth_dir, seed=cfg.seed, device=cfg.device,
                                  record=cfg, verify_checksums=cfg.data.verify_checksums))


def _checkpoint_result(path: Path) -> dict[str, Any]:
    return {"checkpoint": str(path)}


def run_pipeline(cfg: RunConfig) -> Path:
    """Run (or resume) every step of the recipe for `cfg`; returns the report's path."""
    from youtu.eval.report import write_report
    from youtu.eval.runner import evaluate
    from youtu.train.plots import plot_training

    run = cfg.run_dir
    stage_names = [s.name for s in cfg.train.stages]
    if len(stage_names) < 2:
        raise ConfigError("the pipeline needs at least two curriculum stages (the last one is the "
                         "agentic stage of the ablation)")
    ablated = without_domain(cfg)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "run.toml")
    launch = f"{os.environ.get('TORCHELASTIC_RUN_ID', '')}:{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    steps = StepRunner(run / "pipeline.json", total=9, rank=rank, launch=launch)
    d_synth, d_tok, d_data = run / "synth", run / "tokenizer", run / "data"
    d_train, d_agent = run / "train", run / "train_agent"
    d_noagent, d_sft = run / "train_noagent", run / "sft"

    def weights(folder: Path, stage: str) -> tuple[Path, ...]:
        return (folder / f"stage_{stage}" / "model.safetensors",)

    h_synth = config_hash([cfg.synth, cfg.seed])
    steps.run("synth", h_synth, lambda: _synth(cfg, d_synth), (d_synth / "stats.json",),
              clear=(d_synth,))
    h_tok = config_hash([h_synth, cfg.tokenizer, cfg.data, cfg.seed])
    steps.run("tokenizer", h_tok, lambda: _tokenizer(cfg, d_synth, d_tok),
              (d_tok / "tokenizer.json",))
    # Decontamination reads the eval items: only the keys that choose them belong in the hash.
    decontam = [cfg.eval.aptbench_dir, cfg.eval.aptbench_tasks, cfg.eval.math_items]
    h_data = config_hash([h_tok, cfg.data, decontam])
    steps.run("data", h_data, lambda: _data(cfg, d_tok, d_synth, d_data),
              (d_data / "manifest.json",))

    h_model = config_hash([h_data, cfg.model, to_dict(cfg.train) | {"stages": None}, cfg.seed])
    base = steps.run("pretrain", config_hash([h_model, cfg.train.stages[:-1]]),
                     lambda: _train(_with_stages(cfg, stage_names[:-1]), d_data, d_tok, d_train),
                     weights(d_train, stage_names[-2]), clear=(d_train,), everywhere=True)
    base_ckpt = Path(base["checkpoint"])
    agent = steps.run("agent stage", config_hash([h_model, cfg.train.stages]),
                      lambda: _train(_with_stages(cfg, stage_names[-1:]), d_data, d_tok, d_agent,
                                     init=base_ckpt),
                      weights(d_agent, stage_names[-1]), clear=(d_agent,), everywhere=True)
    noagent = steps.run("ablation stage", config_hash([h_model, ablated.train.stages]),
                        lambda: _train(_with_stages(ablated, stage_names[-1:]), d_data, d_tok,
                                       d_noagent, init=base_ckpt),
                        weights(d_noagent, stage_names[-1]), clear=(d_noagent,), everywhere=True)
    agent_ckpt, noagent_ckpt = Path(agent["checkpoint"]), Path(noagent["checkpoint"])
    sft_res = steps.run("sft", config_hash([h_model, cfg.train.stages, cfg.sft]),
                        lambda: _sft(cfg, agent_ckpt, d_data, d_synth, d_sft),
                        weights(d_sft, "sft"), clear=(d_sft,), everywhere=True)
    sft_ckpt = Path(sft_res["checkpoint"])

    models = {"without agentic stage": noagent_ckpt, "with agentic stage": agent_ckpt,
              "with agentic stage + SFT": sft_ckpt}
    eval_dirs = {label: run / "eval" / ckpt.parent.name / ckpt.name for label, ckpt in models.items()}

    def _eval() -> dict[str, Any]:
        out = {}
        for label, ckpt in models.items():
            res = evaluate(cfg.eval, ckpt, eval_dirs[label], device=cfg.device, label=label)
            out[label] = str(eval_dirs[label] / "results.json")
            logger.info("eval %s: %s", label, {k: round(v, 3) for k, v in res["scores"].items()})
        return out

    # eval.compare (earlier results beside a `youtu eval` report) is not used here.
    h_eval = config_hash([h_model, cfg.train.stages, cfg.sft, dataclasses.replace(cfg.eval, compare=[])])
    evals = steps.run("eval", h_eval, _eval, tuple(d / "results.json" for d in eval_dirs.values()))

    def _report() -> dict[str, Any]:
        results = {label: json.loads(Path(p).read_text()) for label, p in evals.items()}
        report = write_report(results, run / "report",
                              f"youtu run '{cfg.name}': agentic mid-training ablation")
        plots = plot_training({"stages 1-3": d_train / "metrics.jsonl",
                               "agentic stage": d_agent / "metrics.jsonl",
                               "ablation (no agentic data)": d_noagent / "metrics.jsonl",
                               "SFT": d_sft / "metrics.jsonl"}, run / "report")
        _append_training_section(report, plots, steps.state)
        return {"report": str(report)}

    rep = steps.run("report", config_hash([h_eval]), _report, (run / "report" / "report.md",))
    return Path(rep["report"])


def _append_training_section(report: Path, plots: list[Path], state: dict[str, dict]) -> None:
    lines = ["", "## Training", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Pipeline steps", "", "| step | seconds (last run) |", "|---|---|"]
    lines += [f"| {name} | {entry['seconds']:.1f} |" for name, entry in state.items()
              if entry.get("done", True)]
    with report.open("a") as f:
        f.write("\n".join(lines) + "\n")


def main(cfg: RunConfig) -> int:
    """`youtu run [config]`: the whole recipe, resumable; prints the report path. Under
    torchrun the processes join one group here and keep it for every training step."""
    from youtu.train import parallel

    dist = parallel.init_distributed(cfg.device)
    try:
        report = run_pipeline(cfg)
    finally:
        parallel.shutdown(dist)
    if dist.is_main:
        print(report)
    return 0
