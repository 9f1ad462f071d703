"""`youtu data inspect`: the tree, per-stage demand, samples."""

from __future__ import annotations

import pytest

from youtu.config import ConfigError, RunConfig, replace
from youtu.data.config import StageConfig
from youtu.data.inspect import main, render_tree
from youtu.data.shards import ShardSet


def test_tree_counts_and_curriculum(prepared):
    folder, manifest = prepared
    shards = ShardSet.open(folder, None)
    stem_tokens = manifest["domains"]["stem"]["tokens"]
    stages = [StageConfig(name="s1", tokens=stem_tokens * 4, mix={"commonsense": 0.75, "stem": 0.25}),
              StageConfig(name="s2", tokens=1000, mix={"agent": 1.0})]
    text = render_tree(shards, stages)
    for domain, info in manifest["domains"].items():
        assert f"{info['docs']:,d} docs" in text and domain in text
    assert "1.00 epochs" in text  # stem: 25% of 4x its tokens
    assert "agent" in text and "MISSING" in text
    assert "quality" in text and "generated-stem" in text


def test_main_prints_tree_and_samples(prepared, capsys):
    folder, _ = prepared
    cfg = replace(RunConfig(), [f"--data.dir={folder}", "--data.inspect_samples=1"])
    assert main(cfg) == 0
    out = capsys.readouterr().out
    assert "samples:" in out and "--- stem #" in out and "Answer:" in out


def test_main_on_a_missing_folder_says_what_to_run(tmp_path):
    cfg = replace(RunConfig(), [f"--data.dir={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match="youtu data prepare"):
        main(cfg)


def test_tree_shows_the_heldout_counts(heldout_prepared):
    folder, manifest = heldout_prepared
    text = render_tree(ShardSet.open(folder, None), [])
    held = manifest["heldout"]
    assert f"held out (data.heldout_fraction 0.2): {held['totals']['docs']:,} docs" in text
    for domain, h in held["domains"].items():
        line = next(x for x in text.splitlines() if f" {domain} " in x)
        assert f"+ held out {h['docs']:,d} docs" in line
    held_text = render_tree(ShardSet.open(folder / "heldout", None), [])
    assert "held-out split (data.heldout_fraction 0.2)" in held_text
    assert f"{held['domains']['agent']['docs']:,d} docs" in held_text


def test_tree_shows_every_pipeline_step_with_documents_in_and_out(prepared):
    folder, manifest = prepared
    text = render_tree(ShardSet.open(folder, None), [])
    quality = next(s for st in manifest["build"]["stages"] for s in st["steps"]
                   if s["step"].endswith("youtu quality"))
    line = next(x for x in text.splitlines() if "youtu quality" in x)
    assert f"{quality['in']:,d} -> {quality['out']:,d}" in line
    assert "dropped: " in line and "too_short" in line
    for stage in ("filter", "exact_find", "exact", "minhash_buckets", "minhash_cluster",
                  "shards"):
        assert f"  {stage}  (" in text
    assert "MinHash stage 4" in text and "exact-deduplication stage 3" in text
