"""`youtu run` end to end: a shortened tiny pipeline through the real CLI, the same code path as
the full run (only config overrides differ), then a second run that skips every step."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from youtu.config import load_config
from youtu.pipeline import StepRunner, without_domain

ROOT = Path(__file__).resolve().parents[1]

# Shrinks budgets only: every step of the recipe still runs for real.
SHORT = [
    "--synth.mix.math=40", "--synth.mix.code=12", "--synth.mix.tools=40",
    "--synth.mix.research=30", "--synth.mix.swe=4", "--synth.mix.pydocs=20",
    "--synth.shard_size=20",
    "--data.embedded.code_chars=250000", "--data.embedded.prose_chars=250000",
    "--data.embedded.stem_chars=120000",
    "--train.max_steps=12", "--train.checkpoint_every=0", "--sft.steps=3",
    "--sft.warmup_steps=1",
]


def _youtu(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the `youtu` console script. `.ci/run` sets YOUTU_E2E_BIN to the bin folder of a venv
    holding only `pip install torch==2.13.0 && pip install -e .` (no dev extra), so the main job
    is shown to run on the core dependencies alone."""
    core_bin = os.environ.get("YOUTU_E2E_BIN")
    if core_bin:
        exe = Path(core_bin) / "youtu"
        assert exe.is_file(), f"YOUTU_E2E_BIN={core_bin} holds no youtu console script"
    else:
        exe = Path(sys.executable).parent / "youtu"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "youtu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)


def test_without_domain_moves_agent_share_to_the_rest():
    cfg = load_config(ROOT / "configs/tiny.toml")
    ablated = without_domain(cfg)
    last, orig = ablated.train.stages[-1], cfg.train.stages[-1]
    assert "agent" in orig.mix and "agent" not in last.mix
    assert last.tokens == orig.tokens and last.seq_len == orig.seq_len
    assert abs(sum(last.mix.values()) - 1.0) < 1e-9
    rest = {d: w for d, w in orig.mix.items() if d != "agent"}
    for d, w in rest.items():  # proportions among the other domains are kept
        assert abs(last.mix[d] / last.mix["code"] - w / rest["code"]) < 1e-9
    assert ablated.train.stages[:-1] == cfg.train.stages[:-1]


def test_step_runner_skips_finished_and_reruns_changed(tmp_path):
    calls = []
    out = tmp_path / "out.txt"

    def step():
        calls.append(1)
        out.write_text("x")
        return {"n": len(calls)}

    r = StepRunner(tmp_path / "pipeline.json", total=1)
    assert r.run("a", "k1", step, (out,)) == {"n": 1}
    r = StepRunner(tmp_path / "pipeline.json", total=1)
    assert r.run("a", "k1", step, (out,)) == {"n": 1} and len(calls) == 1
    r = StepRunner(tmp_path / "pipeline.json", total=1)
    assert r.run("a", "k2", step, (out,)) == {"n": 2}  # config changed: runs again
    out.unlink()
    r = StepRunner(tmp_path / "pipeline.json", total=1)
    assert r.run("a", "k2", step, (out,)) == {"n": 3}  # output gone: runs again


def test_changed_config_clears_old_outputs_interrupted_step_keeps_them(tmp_path):
    work = tmp_path / "work"
    seen = []

    def step():
        seen.append(sorted(p.name for p in work.iterdir()) if work.exists() else None)
        work.mkdir(exist_ok=True)
        (work / f"ckpt{len(seen)}").write_text("x")

    def crash():
        step()
        raise KeyboardInterrupt

    r = StepRunner(tmp_path / "pipeline.json", total=1)
    with pytest.raises(KeyboardInterrupt):
        r.run("train", "k1", crash, clear=(work,))
    r = StepRunner(tmp_path / "pipeline.json", total=1)
    r.run("train", "k1", step, clear=(work,))  # interrupted, same config: resumes from ckpt1
    assert seen[-1] == ["ckpt1"]
    r = StepRunner(tmp_path / "pipeline.json", total=1)
    r.run("train", "k2", step, clear=(work,))  # config changed: old checkpoints are gone
    assert seen[-1] is None and sorted(p.name for p in work.iterdir()) == ["ckpt3"]


def test_ranks_split_the_steps_through_the_manifest(tmp_path):
    """torchrun: rank 0 alone runs single-process steps; rank 1 waits on the manifest, takes
    rank 0's results, and runs the `everywhere` steps itself. An entry of an earlier launch
    (same key, output since deleted) does not release rank 1 early."""
    manifest, out = tmp_path / "pipeline.json", tmp_path / "data.txt"
    stale = {"data": {"key": "k", "done": True, "result": {"n": "stale"}, "launch": "old:0"}}
    manifest.write_text(json.dumps(stale))
    log: list[tuple[int, str]] = []

    def data():
        time.sleep(0.3)  # rank 1 must still be waiting when this ends
        out.write_text("x")
        log.append((0, "data"))
        return {"n": 7}

    def worker(rank: int, results: dict) -> None:
        r = StepRunner(manifest, total=3, rank=rank, launch="run1:0", poll_s=0.01)
        got = [r.run("data", "k", data, (out,)),
               r.run("train", "t", lambda: log.append((rank, "train")) or {"ckpt": rank},
                     everywhere=True),
               r.run("eval", "e", lambda: log.append((rank, "eval")) or {"score": 1.0})]
        results[rank] = got

    results: dict[int, list] = {}
    threads = [threading.Thread(target=worker, args=(rank, results)) for rank in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results[1][0] == {"n": 7}  # rank 0's result of this launch, not the stale entry
    assert results[0] == [{"n": 7}, {"ckpt": 0}, {"score": 1.0}]
    assert results[1] == [{"n": 7}, {"ckpt": 1}, {"score": 1.0}]
    assert sorted(log) == [(0, "data"), (0, "eval"), (0, "train"), (1, "train")]
    assert log.index((1, "train")) > log.index((0, "data"))
    assert json.loads(manifest.read_text())["eval"]["launch"] == "run1:0"


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "pipeline.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.*delete it"):
        StepRunner(tmp_path / "pipeline.json", total=1)


def test_youtu_run_end_to_end_then_skips(tmp_path):
    args = ["run", str(ROOT / "configs/tiny.toml"), f"--out_dir={tmp_path}", "--name=ci", *SHORT]
    first = _youtu(args, ROOT)
    assert first.returncode == 0, first.stderr[-4000:]
    run = tmp_path / "ci"
    report = Path(first.stdout.strip().splitlines()[-1])
    assert report == run / "report" / "report.md" and report.is_file()
    text = report.read_text()
    for label in ("without agentic stage", "with agentic stage", "with agentic stage + SFT"):
        assert label in text
    assert (run / "report" / "loss.png").is_file()
    steps = json.loads((run / "pipeline.json").read_text())
    assert list(steps) == ["synth", "tokenizer", "data", "pretrain", "agent stage",
                           "ablation stage", "sft", "eval", "report"]
    # Both arms hold HF checkpoints and the report's numbers come from their results files.
    assert steps["agent stage"]["result"]["checkpoint"] == str(run / "train_agent" / "stage_agent")
    for name in ("agent stage", "ablation stage", "sft"):
        ckpt = Path(steps[name]["result"]["checkpoint"])
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    results = {label: json.loads(Path(path).read_text())["scores"]
               for label, path in steps["eval"]["result"].items()}
    for scores in results.values():
        assert scores and all(isinstance(v, float) for v in scores.values())
    # The report's table rows are these results, column by column (bits per byte: 4 decimals).
    row = next(line for line in text.splitlines() if line.startswith("| bpb/agent |"))
    cells = [float(c) for c in row.strip("|").split("|")[1:4]]
    labels = ["without agentic stage", "with agentic stage", "with agentic stage + SFT"]
    assert cells == [round(results[label]["bpb/agent"], 4) for label in labels]

    t0 = time.time()
    second = _youtu(args, ROOT)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stderr.count("up to date, skipped") == 9
    assert time.time() - t0 < 60


@pytest.mark.slow
def test_youtu_run_under_torchrun_with_two_processes(tmp_path):
    """The same shortened pipeline as CI under torchrun (gloo, 2 CPU processes): both train
    (FSDP2), rank 0 alone synthesizes, prepares, evaluates and writes the report."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "youtu", "run", str(ROOT / "configs/tiny.toml"), f"--out_dir={tmp_path}",
           "--name=ddp", *SHORT]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "ddp"
    assert proc.stdout.strip().splitlines()[-1] == str(run / "report" / "report.md")
    steps = json.loads((run / "pipeline.json").read_text())
    assert len(steps) == 9 and all(entry["done"] for entry in steps.values())
    assert (run / "train_agent" / "stage_agent" / "model.safetensors").is_file()
    # Both processes trained: the sharded training state has a file from each rank.
    shards = {p.name.split("_")[2] for p in (run / "train_agent").rglob("*.distcp")}
    assert shards == {"0", "1"}, sorted(p.name for p in (run / "train_agent").rglob("*.distcp"))


def test_data_prepare_command_reads_the_synthesized_trajectories(tmp_path, capsys):
    """`youtu synth` then `youtu data prepare` (no `youtu run`): the trajectories become the
    agent domain, with their markup as special tokens."""
    from youtu.agentic.synthesize import synthesize
    from youtu.data.shards import ShardSet
    from youtu.commands import data_prepare_main
    from youtu.tokenizer.train import train_from_texts

    cfg = load_config(ROOT / "configs/tiny.toml", [
        f"--out_dir={tmp_path}", "--name=r", "--synth.mix={math = 6, tools = 6}",
        "--synth.workers=0", "--data.workers=0", "--data.embedded.code_chars=20000",
        "--data.embedded.prose_chars=20000", "--data.embedded.stem_chars=5000"])
    stats = synthesize(cfg.synth, cfg.run_dir / "synth")
    tok = train_from_texts(["The river ran past the stone house. 12 + 30 = 42."] * 50, vocab_size=1024)
    tok.save(cfg.run_dir / "tokenizer")
    assert data_prepare_main(cfg) == 0
    assert "agent" in capsys.readouterr().out
    shards = ShardSet.open(cfg.run_dir / "data", tok.fingerprint)
    manifest = json.loads((cfg.run_dir / "data" / "manifest.json").read_text())
    held = manifest["heldout"]["domains"].get("agent", {}).get("docs", 0)
    assert shards.num_docs("agent") + held == stats["kept"] > 0
    ids = shards.document("agent", 0).tolist()
    assert tok.special("<tool_call>") in ids or tok.special("<analysis>") in ids
