"""The command entry points that join domains: each feeds one domain's `main` with what only a
package above it can read.

    youtu tokenizer train configs/tiny.toml     # tokenizer fed from the [data] sources
    youtu tokenizer eval configs/tiny.toml
    youtu data prepare configs/tiny.toml        # + synth trajectories, decontaminated vs eval
    youtu train configs/tiny.toml --train.eval_hook=true

The layering (DESIGN.md) keeps `tokenizer` importing nothing of ours, `data` only `tokenizer`
and `train` no `eval`; the joins these commands need (the `[data]` corpus for the tokenizer, the
agentic trajectories and eval items for data preparation, youtu.eval as training's evaluator)
therefore sit here, at the top with `pipeline` (which runs the same functions) and `cli`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

from youtu.config import RunConfig

logger = logging.getLogger(__name__)

AGENT = "agent"
"""The data domain the synthesized trajectories become."""


def tokenizer_documents(cfg: RunConfig) -> Iterator[tuple[str, str]]:
    """The tokenizer's (domain, text) corpus: `tokenizer.corpus` (the `[data]` sources when it
    is "data"), then `tokenizer.files`."""
    from youtu.tokenizer.train import iter_documents

    data = read_units(cfg.data) if cfg.tokenizer.corpus == "data" else None
    return iter_documents(cfg.tokenizer, cfg.seed, data)


PARALLEL_READ_CHARS = 8_000_000
"""Below this much embedded corpus (and no `[[data.sources]]`) the tokenizer reads it in this
process: starting the reader processes costs more than they save. Measured on 2 cores:
tiny.toml's 5.5M characters 3.6 s serial vs 4.9 s with 2 workers; with 5M characters of
installed docs added, 16.3 s vs 9.9 s."""


def _unit_pairs(unit) -> list[tuple[str, str]]:
    return [(d.domain, d.text) for d in unit.documents()]


def read_units(data_cfg) -> Iterator[tuple[str, str]]:
    """The `[data]` documents before filtering, as (domain, text), in the order `data prepare`
    plans its read units (`youtu.data.steps.plan_units`: the same documents and order as
    `youtu.data.sources.iter_documents`), read by `data.workers` processes.

    Parsing the embedded corpus (stdlib files) and the installed packages' docstrings is most
    of the tokenizer step's reading, and its units are independent.
    """
    import concurrent.futures as cf

    from youtu.data.steps import plan_units
    from youtu.errors import RunError

    units = plan_units(data_cfg, [])
    workers = min(data_cfg.workers, len(units))
    e = data_cfg.embedded
    embedded_chars = (e.code_chars + e.prose_chars + e.stem_chars + e.packages_chars
                      + e.package_docstrings_chars) if e.enabled else 0
    if not data_cfg.sources and embedded_chars < PARALLEL_READ_CHARS:
        workers = 1
    if workers <= 1:
        for unit in units:
            yield from _unit_pairs(unit)
        return
    # forkserver, not fork, as the data pipeline's pool (and its server, which then serves
    # that pool too, preloads the same modules): this process may hold threads.
    from youtu.data.engine import forkserver_context

    with cf.ProcessPoolExecutor(workers, mp_context=forkserver_context()) as pool:
        try:
            for pairs in pool.map(_unit_pairs, units):
                yield from pairs
        except cf.process.BrokenProcessPool as e:
            raise RunError(f"a process reading the tokenizer corpus died (killed, or out of "
                           f"memory); re-run, with fewer data.workers if memory ran out") from e


def agent_documents(synth_dir: Path):
    """The verified trajectories of a `youtu synth` folder as `agent`-domain documents."""
    from youtu.agentic.render import render_text
    from youtu.agentic.trajectory import load_trajectories
    from youtu.data.document import TRUSTED_SPECIAL, Document

    # Rendered by us from validated trajectories: their chat/tool markup are special tokens
    # (text from any other source never becomes one).
    for traj in load_trajectories(synth_dir):
        if traj.outcome.verified:
            yield Document(text=render_text(traj), domain=AGENT, source=f"synth/{traj.domain}",
                           meta={"id": traj.id, TRUSTED_SPECIAL: True})


def train_tokenizer(cfg: RunConfig, out_dir: Path, synth_dir: Path | None = None):
    """Train the tokenizer on its corpus plus, when given, the trajectories in `synth_dir`: a
    tokenizer stage over the `agent` domain (the 2B recipe has one) learns its merges from them;
    stages that do not name it ignore them."""
    from youtu.tokenizer.train import train_tokenizer as train

    documents = tokenizer_documents(cfg)
    if synth_dir is not None:
        documents = itertools.chain(documents,
                                    ((d.domain, d.text) for d in agent_documents(synth_dir)))
    return train(cfg.tokenizer, documents, out_dir)


def _tokenizer_folder(cfg: RunConfig) -> Path:
    return Path(cfg.tokenizer.path) if cfg.tokenizer.path else cfg.run_dir / "tokenizer"


def tokenizer_train_main(cfg: RunConfig) -> int:
    """`youtu tokenizer train`: train into `tokenizer.path` or `<run_dir>/tokenizer`."""
    out_dir = _tokenizer_folder(cfg)
    train_tokenizer(cfg, out_dir)
    print(out_dir)
    return 0


def tokenizer_eval_main(cfg: RunConfig) -> int:
    """`youtu tokenizer eval`: bytes per token of the tokenizer at `tokenizer.path` (or
    `<run_dir>/tokenizer`) on its corpus, against reference tokenizers."""
    from youtu.tokenizer import Tokenizer
    from youtu.tokenizer.evaluate import evaluate_tokenizer

    tok = Tokenizer.load(_tokenizer_folder(cfg))
    out = cfg.run_dir / "tokenizer_eval.md"
    payload = evaluate_tokenizer(tok, cfg.tokenizer, tokenizer_documents(cfg), out)
    print(out.read_text(), end="")
    logger.info("wrote %s (%d domains)", out, len(payload["bytes_per_token"]))
    return 0


def data_prepare_main(cfg: RunConfig) -> int:
    """`youtu data prepare`: the `[data]` sources plus the trajectories of `youtu synth`
    (`synth.out`, default `<run_dir>/synth`) as the agent domain, decontaminated against the
    eval items, as `youtu run`'s data step does. youtu.data's `main` takes both as plain inputs."""
    from youtu.data.prepare import main as prepare_main
    from youtu.eval.runner import decontamination_texts

    synth_dir = Path(cfg.synth.out) if cfg.synth.out else cfg.run_dir / "synth"
    if synth_dir.is_dir():
        extra = agent_documents(synth_dir)
    else:
        logger.warning("no trajectories at %s: no agent-domain shards (run `youtu synth` first "
                       "or set --synth.out; stages that mix 'agent' need them)", synth_dir)
        extra = ()
    return prepare_main(cfg, extra=extra, eval_texts=decontamination_texts(cfg.eval))


def eval_hook(cfg: RunConfig):
    """youtu.eval's `evaluate` on a training checkpoint (each stage end, and every
    `train.eval_hook_every` steps) when `train.eval_hook` is on; None otherwise. Scores go to
    the metrics as `eval/<key>`; the evaluation's files to `<checkpoints>/eval/<checkpoint>`."""
    if not cfg.train.eval_hook:
        return None
    from youtu.eval.runner import evaluate

    def hook(path: Path, step: int) -> dict[str, float]:
        scores = evaluate(cfg.eval, path, path.parent / "eval" / path.name, device=cfg.device)
        return {f"eval/{k}": float(v) for k, v in scores["scores"].items()
                if isinstance(v, (int, float))}

    return hook


def train_main(cfg: RunConfig) -> int:
    """`youtu train`: youtu.train's `main` with youtu.eval as its evaluator (`train.eval_hook`)."""
    from youtu.train.loop import main

    return main(cfg, eval_hook=eval_hook(cfg))
