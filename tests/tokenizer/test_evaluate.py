"""`youtu tokenizer eval`: the table, the baselines, the CLI path."""

from __future__ import annotations

import json
from pathlib import Path

from youtu.config import load_config
from youtu.tokenizer.config import TokenizerConfig, TokenizerStage
from youtu.tokenizer.evaluate import agent_sample, bytes_per_token, evaluate_tokenizer
from youtu.tokenizer.train import train_tokenizer


def test_bytes_per_token_counts_utf8_bytes():
    per_byte = lambda texts: [list(t.encode()) for t in texts]  # noqa: E731
    assert bytes_per_token(per_byte, ["abc", "中"]) == 1.0
    per_char = lambda texts: [list(t) for t in texts]  # noqa: E731
    assert bytes_per_token(per_char, ["中文"]) == 3.0


def _cfg() -> TokenizerConfig:
    stages = [TokenizerStage(name="general", vocab_size=600, domains=["commonsense", "code", "stem"],
                             weights=[0.6, 0.2, 0.2]),
              TokenizerStage(name="stem", vocab_size=168, domains=["stem"], max_chars=30_000)]
    return TokenizerConfig(vocab_size=1024, stages=stages, max_stage_chars=150_000,
                           corpus="files", holdout_every=5, eval_max_chars=20_000)


def test_evaluate_writes_table(tmp_path, prose_texts, code_texts, stem_texts):
    docs = ([("commonsense", t) for t in prose_texts] + [("code", t) for t in code_texts]
            + [("stem", t) for t in stem_texts])
    cfg = _cfg()
    tok = train_tokenizer(cfg, docs, tmp_path / "tok")
    payload = evaluate_tokenizer(tok, cfg, docs, tmp_path / "eval.md")
    table = (tmp_path / "eval.md").read_text()
    rows = payload["bytes_per_token"]
    assert {"prose", "math/LaTeX", "code", "agent trajectories"} <= set(rows)
    for row in rows.values():
        assert list(row) == ["youtu (1024)", "single-stage (1024)", "cl100k (100277)"]
        assert all(1.0 <= v < 8 for v in row.values())
    assert rows["prose"]["cl100k (100277)"] > rows["prose"]["youtu (1024)"]  # 100k vocab wins
    assert "| prose |" in table and "youtu / single-stage" in table
    assert json.loads((tmp_path / "eval.json").read_text())["fingerprint"] == tok.fingerprint


def test_agent_sample_is_rendered_chat():
    texts = agent_sample(3)
    assert len(texts) == 3 and all("<tool_call>" in t and "<tool_response>" in t for t in texts)


def test_cli_main_uses_run_dir(tmp_path, prose_texts, stem_texts, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "prose.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in prose_texts))
    (folder / "stem.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in stem_texts))
    cfg = load_config(None, [f"--out_dir={tmp_path}", "--name=t", "--tokenizer.corpus=files",
                             "--tokenizer.vocab_size=1024",
                             '--tokenizer.stages=[{name="g", vocab_size=700, domains=["commonsense", "stem"]}, '
                             '{name="s", vocab_size=68, domains=["stem"], max_chars=20000}]',
                             f'--tokenizer.files={{commonsense=["{folder}/prose.jsonl"], '
                             f'stem=["{folder}/stem.jsonl"]}}'])
    from youtu.commands import tokenizer_eval_main as eval_main, tokenizer_train_main as train_main

    assert train_main(cfg) == 0
    assert (tmp_path / "t" / "tokenizer" / "tokenizer.json").is_file()
    assert eval_main(cfg) == 0
    assert "| math/LaTeX |" in (tmp_path / "t" / "tokenizer_eval.md").read_text()


def test_tokenizer_corpus_read_in_parallel_is_the_serial_corpus(tmp_path):
    # The tokenizer step reads the [data] units in data.workers processes: same documents, same
    # order as the serial reader (embedded parts, then a JSONL folder read file by file).
    from youtu.commands import read_units
    from youtu.data.sources import iter_documents

    folder = tmp_path / "web"
    folder.mkdir()
    for i in range(3):
        rows = [json.dumps({"text": f"document {i}-{j} about rivers and hills"}) for j in range(4)]
        (folder / f"part{i}.jsonl").write_text("\n".join(rows) + "\n")
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "tiny.toml", [
        "--data.embedded.code_chars=60000", "--data.embedded.prose_chars=30000",
        "--data.embedded.stem_chars=20000", "--data.workers=2",
        f'--data.sources=[{{path = "{folder}", domain = "commonsense"}}]'])
    serial = [(d.domain, d.text) for d in iter_documents(cfg.data)]
    parallel = list(read_units(cfg.data))
    assert {d for d, _ in serial} == {"code", "commonsense", "stem"}
    assert sum("rivers and hills" in t for _, t in serial) == 12
    assert parallel == serial
