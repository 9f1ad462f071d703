"""prepare(): documents -> filtered, deduplicated, tokenized shards + manifest; resumable."""

from __future__ import annotations

import json

import pytest

from youtu.data.config import DataConfig, DedupConfig, EmbeddedConfig, SourceConfig
from youtu.data.document import Document
from youtu.data.prepare import prepare
from youtu.data.shards import ShardError, ShardSet

NO_EMBEDDED = EmbeddedConfig(enabled=False)
CODE = '''import json
from pathlib import Path


class Store:
    """Keeps records in a JSON file."""

    def __init__(self, path):
        self.path = Path(path)
        self.items = {}

    def load(self):
        if self.path.exists():
            self.items = json.loads(self.path.read_text())
        return self.items

    def save(self):
        self.path.write_text(json.dumps(self.items, indent=2))
'''
_SUBJECTS = ("the miller", "a merchant", "the old clerk", "her brother", "the mayor", "a sailor",
             "the teacher", "my neighbour", "the baker", "a young farmer", "the doctor", "his aunt")
_ACTS = ("carried grain to", "wrote a letter about", "walked slowly past", "painted a picture of",
         "argued loudly with", "built a fence around", "sold apples near", "dreamed often of",
         "counted the boats in", "sang quietly beside", "repaired the roof of", "forgot all about")
_PLACES = ("the river", "the market square", "a quiet harbour", "the northern hills",
           "the stone bridge", "an empty warehouse", "the village school", "the wheat fields",
           "a narrow lane", "the railway station", "the town library", "a small chapel")

_ENDINGS = (" before the first snow", ", because the weather had turned", " while everyone slept",
            " with great care", ", as the letters tell us", " for the last time",
            " during a long summer", " on a market day")


def _prose(i: int) -> str:
    """A distinct, clean English paragraph (passes the quality rules), ~120 words."""
    lines = []
    for k in range(8):
        j = i * 8 + k
        lines.append(f"In {1700 + j}, {_SUBJECTS[j % 12]} {_ACTS[(j * 5 + i) % 12]} "
                     f"{_PLACES[(j * 7 + 3 * i) % 12]}{_ENDINGS[(j * 3 + i) % 8]}.")
    return "\n".join(lines)


TEXTS = [_prose(i) for i in range(12)]


def _jsonl(path, texts, **extra):
    path.write_text("".join(json.dumps({"text": t, **extra}) + "\n" for t in texts))
    return path


def _cfg(tmp_path, **kw) -> DataConfig:
    src = _jsonl(tmp_path / "docs.jsonl", TEXTS)
    base = dict(embedded=NO_EMBEDDED, workers=0, shard_chars=3000,
                sources=[SourceConfig(path=str(src), domain="commonsense", name="town")])
    return DataConfig(**{**base, **kw})


def test_embedded_prepare_manifest_and_shards(prepared, tokenizer):
    folder, manifest = prepared
    shards = ShardSet.open(folder, tokenizer.fingerprint)
    assert set(shards.domains) == {"code", "commonsense", "stem"}
    for domain in shards.domains:
        info = manifest["domains"][domain]
        assert shards.num_tokens(domain) == info["tokens"] > 0
        assert len(info["shards"]) >= 2  # shard_chars=30k splits each domain
        doc = shards.document(domain, 0)
        assert doc[0] == tokenizer.bos_id and doc[-1] == tokenizer.eos_id
    assert manifest["tokenizer"]["fingerprint"] == tokenizer.fingerprint
    assert manifest["sources"]["generated-stem"]["stem"] == manifest["domains"]["stem"]["docs"]
    quality = manifest["filters"]["quality"]
    assert quality["removed_docs"] > 0 and quality["removed_tokens_est"] > 0
    assert sum(r["docs"] for r in quality["reasons"].values()) == quality["removed_docs"]
    assert set(manifest["build"]["seconds"]) == {"read", "filter", "tokenize_worker_sum",
                                                 "write_worker_sum"}
    assert (folder / "tokenizer" / "tokenizer.json").is_file()


def test_tokens_decode_back_to_the_documents_in_order(tmp_path, tokenizer):
    cfg = _cfg(tmp_path, quality=_no_quality(), dedup=DedupConfig(near=False))
    prepare(cfg, tokenizer, tmp_path / "out")
    shards = ShardSet.open(tmp_path / "out", tokenizer.fingerprint)
    decoded = [tokenizer.decode(shards.document("commonsense", i)[1:-1].tolist())
               for i in range(shards.num_docs("commonsense"))]
    assert decoded == TEXTS


def _no_quality():
    from youtu.data.config import QualityConfig

    return QualityConfig(enabled=False)


def test_rerun_skips_finished_shards_and_rebuilds_damaged_ones(tmp_path, tokenizer, caplog):
    cfg = _cfg(tmp_path, quality=_no_quality())
    out = tmp_path / "out"
    first = prepare(cfg, tokenizer, out)
    n = len(first["domains"]["commonsense"]["shards"])
    assert n >= 3 and first["build"]["shards_written"] == n
    again = prepare(cfg, tokenizer, out)
    assert again["build"]["shards_written"] == 0 and again["build"]["shards_skipped"] == n
    assert again["domains"] == first["domains"]
    (out / "commonsense" / "shard_00001.bin").unlink()
    bad = out / "commonsense" / "shard_00002.bin"
    bad.write_bytes(b"\x00" * bad.stat().st_size)  # same size, wrong bytes
    third = prepare(cfg, tokenizer, out)
    assert third["build"]["shards_written"] == 2 and third["build"]["shards_skipped"] == n - 2
    assert third["domains"] == first["domains"]
    assert any("rebuilding commonsense/shard_00002" in r.getMessage() for r in caplog.records)
    # Fewer documents now: shards past the new end are removed, the folder stays consistent.
    _jsonl(tmp_path / "docs.jsonl", TEXTS[:3])
    fourth = prepare(cfg, tokenizer, out)
    kept = len(fourth["domains"]["commonsense"]["shards"])
    assert kept < n and not (out / "commonsense" / f"shard_{kept:05d}.bin").exists()
    ShardSet.open(out, tokenizer.fingerprint)


def test_worker_processes_write_the_same_shards(tmp_path, tokenizer):
    cfg0 = _cfg(tmp_path, quality=_no_quality())
    cfg2 = _cfg(tmp_path, quality=_no_quality(), workers=2)
    a = prepare(cfg0, tokenizer, tmp_path / "a")
    b = prepare(cfg2, tokenizer, tmp_path / "b")
    assert b["build"]["shards_written"] == len(b["domains"]["commonsense"]["shards"])
    assert [s["sha256"] for s in a["domains"]["commonsense"]["shards"]] == \
        [s["sha256"] for s in b["domains"]["commonsense"]["shards"]]


def test_shards_from_another_tokenizer_are_refused(prepared):
    folder, _ = prepared
    with pytest.raises(ShardError, match="re-run `youtu data prepare` with this tokenizer"):
        ShardSet.open(folder, "0123456789abcdef")


def test_extra_agent_text_and_chat_conversations(tmp_path, tokenizer):
    from youtu.tokenizer.chat import encode_chat

    messages = [{"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "2 + 3 = 5."}]
    agent_text = ("<analysis>Need the sum.</analysis><tool_call>{\"name\": \"calc\", "
                  "\"arguments\": {\"expr\": \"2+3\"}}</tool_call> The result is 5.")
    from youtu.tokenizer.chat import render_chat

    rendered = render_chat(messages)  # what youtu.agentic.render.render_text produces
    extra = [Document(agent_text, "agent", "synth"), Document(rendered, "agent", "synth"),
             Document("", "chat", "sft", {"messages": messages}),
             Document("not a conversation, plain chat text", "chat", "sft")]
    prepare(_cfg(tmp_path), tokenizer, tmp_path / "out", extra=extra)
    shards = ShardSet.open(tmp_path / "out", tokenizer.fingerprint)
    agent = shards.document("agent", 0).tolist()
    assert tokenizer.special("<tool_call>") in agent  # trusted synthetic text keeps special ids
    assert tokenizer.special("<analysis>") in agent
    framed = shards.document("agent", 1).tolist()  # its own BOS/EOS, not doubled
    assert framed == encode_chat(tokenizer, messages)[0]
    assert framed[:2] != [tokenizer.bos_id] * 2 and framed[-2:] != [tokenizer.eos_id] * 2
    ids, mask = encode_chat(tokenizer, messages)
    examples = list(shards.examples("chat"))
    assert examples[0] == (ids, mask)
    assert sum(mask) < len(mask)  # prompt tokens are masked
    plain_ids, plain_mask = examples[1]
    assert plain_ids[0] == tokenizer.bos_id and set(plain_mask) == {1}


def test_a_broken_conversation_names_its_source(tmp_path, tokenizer):
    bad = Document("x", "chat", "sft-v2", {"messages": [{"role": "robot", "content": "hi"}]})
    with pytest.raises(ValueError, match="source 'sft-v2' cannot be rendered: .*unknown role"):
        prepare(_cfg(tmp_path), tokenizer, tmp_path / "out", extra=[bad])


def test_decontamination_and_auto_domains(tmp_path, tokenizer):
    src = _jsonl(tmp_path / "mixed.jsonl", [CODE, TEXTS[0], TEXTS[1]])
    cfg = DataConfig(embedded=NO_EMBEDDED, workers=0,
                     sources=[SourceConfig(path=str(src), name="mixed")])
    manifest = prepare(cfg, tokenizer, tmp_path / "out",
                       eval_texts=[" ".join(TEXTS[1].split()[3:30])])
    assert manifest["domains"]["code"]["docs"] == 1
    assert manifest["domains"]["commonsense"]["docs"] == 1
    assert manifest["filters"]["decontam"]["removed_docs"] == 1
    assert manifest["sources"]["mixed"] == {"read": 3, "code": 1, "commonsense": 1}


def test_bayes_classifier_option(tmp_path, tokenizer):
    src = _jsonl(tmp_path / "mixed.jsonl", [CODE, TEXTS[0]])
    cfg = DataConfig(embedded=EmbeddedConfig(code_chars=0, prose_chars=0, stem_chars=2000),
                     workers=0, classifier="bayes",
                     sources=[SourceConfig(path=str(src), name="mixed")])
    manifest = prepare(cfg, tokenizer, tmp_path / "out")
    assert manifest["sources"]["mixed"] == {"read": 2, "code": 1, "commonsense": 1}


def test_main_uses_the_run_folders(tmp_path, tokenizer, capsys):
    from youtu.config import ConfigError, RunConfig, replace
    from youtu.data.prepare import main

    cfg = replace(RunConfig(), [f"--out_dir={tmp_path}", "--name=r", "--data.workers=0",
                                "--data.embedded.code_chars=20000",
                                "--data.embedded.prose_chars=20000",
                                "--data.embedded.stem_chars=5000"])
    with pytest.raises(ConfigError, match="no tokenizer at .*youtu tokenizer train"):
        main(cfg)
    tokenizer.save(tmp_path / "r" / "tokenizer")
    assert main(cfg) == 0
    assert (tmp_path / "r" / "data" / "manifest.json").is_file()
    assert "stem" in capsys.readouterr().out
