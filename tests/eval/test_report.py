"""Reports: markdown tables with deltas and PNG charts per score group."""

from __future__ import annotations

import pytest

from youtu.eval.report import write_report

A = {"checkpoint": "runs/x/agent", "scores": {
    "aptbench/math/planning_single": 0.5, "aptbench/math/action_cal": 0.25, "aptbench/math": 0.375,
    "probe/math/planning": 0.4, "probe/math": 0.4, "bpb/code": 2.5, "humaneval/pass@1": 0.1}}
B = {"checkpoint": "runs/x/base", "scores": {
    "aptbench/math/planning_single": 0.25, "aptbench/math/action_cal": 0.25, "aptbench/math": 0.25,
    "probe/math/planning": 0.2, "probe/math": 0.2, "bpb/code": 2.75}}


def test_two_labels_get_deltas_and_plots(tmp_path):
    path = write_report({"without agent stage": B, "with agent stage": A}, tmp_path, "Ablation")
    text = path.read_text()
    assert text.startswith("# Ablation")
    assert "| score | without agent stage | with agent stage | delta |" in text
    assert "| **aptbench/math** | 25.0 | 37.5 | +12.5 |" in text
    assert "| bpb/code | 2.7500 | 2.5000 | -0.2500 |" in text
    assert "| humaneval/pass@1 | - | 0.1000 | - |" in text
    # category means come before their tasks
    assert text.index("**aptbench/math**") < text.index("aptbench/math/planning_single")
    for stem in ("aptbench", "probes", "bpb", "general"):
        png = tmp_path / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({stem}.png)" in text


def test_one_flat_result_set_and_empty_input(tmp_path):
    path = write_report({"only": {"bpb/stem": 3.0}}, tmp_path, "One")
    assert "delta" not in path.read_text() and (tmp_path / "bpb.png").is_file()
    assert not (tmp_path / "aptbench.png").exists()
    with pytest.raises(ValueError, match="at least one"):
        write_report({}, tmp_path, "None")


def test_cloze_rows_carry_their_chance_rate(tmp_path):
    def result(acc):
        return {"scores": {"cloze": acc, "cloze/math": acc, "cloze/math/tool": acc},
                "details": {"cloze": {"chance": {"cloze": 0.25, "cloze/math": 0.25,
                                                 "cloze/math/tool": 0.25}}}}

    text = write_report({"without": result(0.25), "with": result(0.5)}, tmp_path, "C").read_text()
    assert "| score | without | with | delta | chance |" in text
    assert "| **cloze** | 25.0 | 50.0 | +25.0 | 25.0 |" in text
    assert text.index("**cloze**") < text.index("**cloze/math**") < text.index("cloze/math/tool")
    assert (tmp_path / "cloze.png").is_file()
    # groups without chance rates keep their columns
    assert "| **aptbench" not in text and "chance |" not in write_report(
        {"a": A}, tmp_path / "a", "A").read_text()
