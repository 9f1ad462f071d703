"""`youtu eval`: the real APTBench math and tool data end to end on a tiny random model."""

from __future__ import annotations

import json

from youtu.cli import main as cli_main
from youtu.eval.config import EvalConfig
from youtu.eval.harness import CheckpointLM
from youtu.eval.runner import decontamination_texts, evaluate, latest_checkpoint


class CountingLM(CheckpointLM):
    calls = 0

    def generate_until(self, requests):
        CountingLM.calls += len(requests)
        return super().generate_until(requests)


def test_aptbench_end_to_end_on_a_tiny_model(tiny_checkpoint, aptbench_root, tmp_path):
    cfg = EvalConfig(tasks=["aptbench"], aptbench_limit=2, aptbench_dir=str(aptbench_root),
                     max_length=1024)
    lm = CountingLM(tiny_checkpoint, max_length=1024)
    res = evaluate(cfg, tiny_checkpoint, tmp_path, lm=lm)
    scores = res["scores"]
    for key in ["aptbench/math/planning_single", "aptbench/math/action_cal",
                "aptbench/math/feedback_tf", "aptbench/tool/acebench_api_select",
                "aptbench/tool/bfcl_v4_api_select", "aptbench/tool/bfcl_v4_api_param",
                "aptbench/math", "aptbench/tool"]:
        assert 0.0 <= scores[key] <= 1.0, key
    assert CountingLM.calls == 12
    details = res["details"]["aptbench"]["aptbench/tool/acebench_api_select"]
    rows = [json.loads(x) for x in open(details["predictions"])]
    assert len(rows) == 2 and all(r["prompt_tokens"] <= 1024 - 30 for r in rows)
    assert details["truncated"] == 2  # 3-shot tool prompts exceed a 1k context: head + tail kept
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["scores"] == scores and saved["config"]["aptbench_limit"] == 2
    assert (tmp_path / "report.md").is_file() and (tmp_path / "aptbench.png").is_file()
    # resumed: nothing is generated again, the scores are the same
    again = evaluate(cfg, tiny_checkpoint, tmp_path, lm=lm)
    assert CountingLM.calls == 12 and again["scores"] == scores


def test_youtu_eval_command(tiny_checkpoint, tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"text": "The cat sat on the mat.", "domain": "commonsense"})
                       + "\n")
    rc = cli_main(["eval", str(tiny_checkpoint), f"--out_dir={tmp_path}", "--device=cpu",
                   "--eval.tasks=['bpb', 'math_word']", "--eval.math_items=3",
                   f"--eval.bpb_data={heldout}", f"--eval.out={tmp_path / 'ev'}"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "bpb/commonsense" in out and "math_word/exact_match" in out
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(res["scores"]) == {"bpb/commonsense", "math_word/exact_match"}
    assert (tmp_path / "ev" / "config.toml").is_file()
    assert len((tmp_path / "ev" / "predictions" / "math_word.jsonl").read_text().splitlines()) == 3


def test_latest_checkpoint_and_missing_one(tiny_checkpoint, tmp_path, capsys):
    assert latest_checkpoint(tiny_checkpoint.parent) == tiny_checkpoint
    assert latest_checkpoint(tmp_path) is None
    assert cli_main(["eval", f"--out_dir={tmp_path}", "--name=none"]) == 2
    assert "no checkpoint under" in capsys.readouterr().err
    assert cli_main(["eval", str(tmp_path / "nope"), f"--out_dir={tmp_path}"]) == 2


def test_decontamination_texts_cover_the_benchmarks(aptbench_root):
    from youtu.eval.tasks.humaneval import load_problems
    from youtu.eval.tasks.math_word import EVAL_SEED, make_problem

    texts = list(decontamination_texts(EvalConfig(aptbench_dir=str(aptbench_root), math_items=5)))
    first = json.loads((aptbench_root / "data/agentic_math/planning_single/input_data.jsonl")
                       .read_text().splitlines()[0])
    assert first["repo_info"] in texts and first["choices"] in texts
    assert load_problems(1)[0]["prompt"] in texts
    assert make_problem(EVAL_SEED + 4).question in texts
    assert len(texts) > 5000
