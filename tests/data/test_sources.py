"""Readers on small files the tests write, and the embedded corpus."""

from __future__ import annotations

import gzip
import json

import pytest

from youtu.data.config import DataConfig, EmbeddedConfig, SourceConfig
from youtu.data.sources import embedded_corpus, iter_documents, iter_source
from youtu.errors import ConfigError

RECORDS = [{"text": "first document", "lang": "en", "kind": "stem"},
           {"text": "", "kind": "code"},  # empty: skipped
           {"text": "second document", "kind": "code"},
           {"body": "x", "text": "third document", "kind": "commonsense"}]


def _write_jsonl(path, records, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _texts(cfg: SourceConfig) -> list[str]:
    return [d.text for d in iter_source(cfg)]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_plain_gzip_zstd(tmp_path, suffix):
    path = tmp_path / f"docs{suffix}"
    if suffix.endswith(".gz"):
        _write_jsonl(path, RECORDS, gzip.open)
    elif suffix.endswith(".zst"):
        import zstandard

        blob = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
        path.write_bytes(zstandard.ZstdCompressor().compress(blob))
    else:
        _write_jsonl(path, RECORDS)
    docs = list(iter_source(SourceConfig(path=str(path), domain="stem", name="mine")))
    assert [d.text for d in docs] == ["first document", "second document", "third document"]
    assert {d.domain for d in docs} == {"stem"} and {d.source for d in docs} == {"mine"}
    assert docs[1].meta["line"] == 3


def test_jsonl_domain_field_text_field_and_max_docs(tmp_path):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, [{"content": f"doc {i}", "dom": "code" if i % 2 else "stem"}
                        for i in range(5)])
    docs = list(iter_source(SourceConfig(path=str(path), text_field="content",
                                         domain_field="dom", max_docs=3)))
    assert [(d.text, d.domain) for d in docs] == [("doc 0", "stem"), ("doc 1", "code"),
                                                  ("doc 2", "stem")]


def test_jsonl_errors_name_the_file_line_and_fix(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON .*set kind = \"text\""):
        _texts(SourceConfig(path=str(path)))
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: no field 'text' \(fields: body\); "
                                          r"set text_field in the \[\[data.sources\]\] entry"):
        _texts(SourceConfig(path=str(path)))
    with pytest.raises(ValueError, match="does not exist"):  # ConfigError is a ValueError
        _texts(SourceConfig(path=str(tmp_path / "missing.jsonl")))


@pytest.mark.parametrize("content, match", [
    ('["a", "list"]\n', r"bad.jsonl:1: expected a JSON object per record, got list; .*kind"),
    ('{"text": 42}\n', r"bad.jsonl:1: field 'text' is a int, not text; set text_field"),
    ('{"text": "ok"}\n{"text": ' + "9" * 5000 + '}\n', r"bad.jsonl:2: unreadable JSON \(Exceeds"),
    ('{"text": ' + "[" * 10_000 + "\n", r"bad.jsonl:1: unreadable JSON \(maximum recursion"),
    (b'{"text": "caf\xe9"}\n', r"bad.jsonl:1: not UTF-8 text .*re-encode the file as UTF-8"),
], ids=["list-record", "int-text", "huge-int", "too-deep", "latin-1"])
def test_unusable_records_are_config_errors(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        _texts(SourceConfig(path=str(path)))


def test_missing_and_mismatched_sources_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'nope.jsonl' does not exist \(relative to .*\); "
                                          r"fix \[\[data.sources\]\] path"):
        _texts(SourceConfig(path="nope.jsonl"))
    with pytest.raises(ConfigError, match=r"is a folder but \[\[data.sources\]\] kind is 'jsonl'"):
        _texts(SourceConfig(path=str(tmp_path), kind="jsonl"))
    text = tmp_path / "notes.txt"
    text.write_text("plain words")
    with pytest.raises(ConfigError, match=r"is a file but \[\[data.sources\]\] kind is 'hf'"):
        _texts(SourceConfig(path=str(text), kind="hf"))
    with pytest.raises(ConfigError, match=r"notes.txt: not a Parquet file .*set its kind"):
        _texts(SourceConfig(path=str(text), kind="parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"not a dataset saved by `datasets` save_to_disk"):
        _texts(SourceConfig(path=str(tmp_path / "empty"), kind="hf"))


@pytest.mark.parametrize("suffix, blob", [
    (".jsonl.gz", b"not gzip at all"),
    (".jsonl.gz", gzip.compress(b'{"text": "a"}\n' * 100, mtime=0)[:30]),
    (".jsonl.zst", b"not zstd at all"),
], ids=["not-gzip", "truncated-gzip", "not-zstd"])
def test_corrupt_compressed_files_are_config_errors(tmp_path, suffix, blob):
    path = tmp_path / f"docs{suffix}"
    path.write_bytes(blob)
    with pytest.raises(ConfigError, match=rf"docs{suffix}: corrupt or truncated .* re-create it"):
        _texts(SourceConfig(path=str(path)))


@pytest.mark.parametrize("bad", ["../escape", "Web Text", "heldout"])
def test_record_domains_must_be_domain_names(tmp_path, bad):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, [{"text": "fine", "dom": "code"}, {"text": "x", "dom": bad}])
    with pytest.raises(ConfigError, match=r"d.jsonl:2: field 'dom' \(the \[\[data.sources\]\] "
                                          r"domain_field\) (must be a lowercase|cannot be)"):
        _texts(SourceConfig(path=str(path), domain_field="dom"))


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"content": ["a b c", "d e f", None], "n": [1, 2, 3]}), path)
    assert _texts(SourceConfig(path=str(path), text_field="content")) == ["a b c", "d e f"]
    with pytest.raises(ConfigError, match=r"no column 'text' \(columns: content, n\); set text_field"):
        _texts(SourceConfig(path=str(path)))


def test_text_file_and_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub" / "a.md").write_text("ay")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    (tmp_path / "empty.txt").write_text("  \n")
    assert _texts(SourceConfig(path=str(tmp_path / "b.txt"))) == ["bee"]
    assert _texts(SourceConfig(path=str(tmp_path), kind="text")) == ["bee", "ay"]
    # 'auto' on a folder dispatches per file: text files by extension, jsonl/parquet by suffix.
    _write_jsonl(tmp_path / "sub" / "c.jsonl", [{"text": "sea"}])
    assert sorted(_texts(SourceConfig(path=str(tmp_path)))) == ["ay", "bee", "sea"]


def test_hf_dataset_saved_to_disk(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({"text": ["one", "two"], "label": [0, 1]})
    ds.save_to_disk(str(tmp_path / "plain"))
    assert _texts(SourceConfig(path=str(tmp_path / "plain"))) == ["one", "two"]
    DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dict"))
    assert _texts(SourceConfig(path=str(tmp_path / "dict"), split="test")) == ["two"]
    with pytest.raises(ConfigError, match=r"no split 'dev' \(splits: train, test\); set split"):
        _texts(SourceConfig(path=str(tmp_path / "dict"), split="dev"))


def test_embedded_corpus_domains_caps_and_determinism():
    caps = dict(code_chars=50_000, prose_chars=40_000, stem_chars=20_000)
    a = list(embedded_corpus(0, **caps))
    b = list(embedded_corpus(0, **caps))
    c = list(embedded_corpus(1, **caps))
    assert [d.text for d in a] == [d.text for d in b]
    assert [d.text for d in a] != [d.text for d in c]
    chars = {dom: sum(len(d.text) for d in a if d.domain == dom)
             for dom in ("code", "commonsense", "stem")}
    assert 0.5 * 50_000 < chars["code"] <= 50_000
    assert 0.5 * 40_000 < chars["commonsense"] <= 40_000
    assert 0.8 * 20_000 < chars["stem"] <= 20_000
    code = next(d for d in a if d.domain == "code")
    assert "def " in code.text or "import " in code.text
    stem = next(d for d in a if d.domain == "stem")
    assert "Answer:" in stem.text and len(stem.meta["answers"]) == 8
    assert not any("site-packages" in d.meta.get("module", "") for d in a)


def test_a_large_stem_cap_is_read_as_independent_slices(monkeypatch):
    """The data step's tasks share a large stem cap (one 20M-character stream was one straggler
    task): plan_units gives one unit per slice, the slices together are what embedded_corpus
    yields, and a cap within one slice keeps the documents it always had (slice 0's seed)."""
    from youtu.data import sources
    from youtu.data.config import EmbeddedConfig
    from youtu.data.steps import plan_units

    one_slice = [d.text for d in embedded_corpus(0, code_chars=0, prose_chars=0, stem_chars=9_000)]
    monkeypatch.setattr(sources, "STEM_SLICE_CHARS", 10_000)
    assert [d.text for d in embedded_corpus(0, code_chars=0, prose_chars=0,
                                            stem_chars=9_000)] == one_slice
    whole = list(embedded_corpus(0, code_chars=0, prose_chars=0, stem_chars=35_000))
    units = plan_units(DataConfig(embedded=EmbeddedConfig(code_chars=0, prose_chars=0,
                                                          stem_chars=35_000)), [])
    assert len(units) == 4  # 10k + 10k + 10k + 5k
    read = [d.text for u in units for d in u.documents()]
    assert read == [d.text for d in whole]
    assert read[:len(one_slice)] == one_slice  # slice 0 is the old stream
    per_slice = [sum(len(d.text) for d in u.documents()) for u in units]
    assert all(8_000 < c <= 10_000 for c in per_slice[:3]) and 3_000 < per_slice[3] <= 5_000
    assert len(set(read)) > 0.95 * len(read)  # the slices' seeds differ: no repeated stream
    with pytest.raises(ValueError, match="stem_slice=4 is outside 0..3"):
        list(embedded_corpus(0, code_chars=0, prose_chars=0, stem_chars=35_000, stem_slice=4))


def test_iter_documents_combines_embedded_and_sources(tmp_path):
    _write_jsonl(tmp_path / "x.jsonl", [{"text": "extra"}])
    cfg = DataConfig(embedded=EmbeddedConfig(code_chars=0, prose_chars=0, stem_chars=3000),
                     sources=[SourceConfig(path=str(tmp_path / "x.jsonl"), domain="agent")])
    docs = list(iter_documents(cfg))
    assert docs[-1].text == "extra" and docs[-1].domain == "agent"
    assert {d.domain for d in docs[:-1]} == {"stem"}


def test_source_config_validation():
    with pytest.raises(ValueError, match="lowercase domain"):
        SourceConfig(path="x", domain="Code")
    with pytest.raises(ValueError, match="path"):
        SourceConfig(path="")
