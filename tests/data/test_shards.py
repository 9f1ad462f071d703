"""Shard files: round trip, and every kind of damage refused with a message naming file and fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from .data_helpers import make_shards

from youtu.data.shards import ShardError, ShardSet

DOCS = {"code": [[1, 2, 3], [4, 5], [6, 7, 8, 9]], "stem": [[10, 11], [12, 13, 14]]}


@pytest.fixture
def folder(tmp_path):
    return make_shards(tmp_path, DOCS, fingerprint="fp-a", per_shard=2)


def test_round_trip(folder):
    s = ShardSet.open(folder, "fp-a")
    assert s.domains == ["code", "stem"]
    assert s.num_docs("code") == 3 and s.num_tokens("code") == 9
    assert [s.document("code", i).tolist() for i in range(3)] == DOCS["code"]
    assert s.document("stem", 1).dtype == np.uint32
    assert len(s.manifest["domains"]["code"]["shards"]) == 2
    assert list(s.examples("stem")) == [([10, 11], [1, 1]), ([12, 13, 14], [1, 1, 1])]
    with pytest.raises(KeyError, match="no shards for domain 'agent'.*code, stem"):
        s["agent"]


def test_wrong_tokenizer_is_refused(folder):
    with pytest.raises(ShardError, match=r"tokenized with tokenizer fp-a, but this run uses "
                                         r"tokenizer fp-b: re-run `youtu data prepare`"):
        ShardSet.open(folder, "fp-b")


def test_truncated_shard_is_refused(folder):
    path = folder / "code" / "shard_00000.bin"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ShardError, match=r"code/shard_00000.bin is truncated or corrupt: 16 bytes, "
                                         r"the manifest says 20; delete it and re-run"):
        ShardSet.open(folder, "fp-a")


def test_corrupt_shard_fails_its_checksum(folder):
    path = folder / "stem" / "shard_00000.bin"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"stem/shard_00000.bin fails its sha256 checksum"):
        ShardSet.open(folder, "fp-a")
    ShardSet.open(folder, "fp-a", verify_checksums=False)  # sizes still fine: opt-out works


def test_missing_files_and_manifest(folder):
    (folder / "code" / "shard_00001.idx").unlink()
    with pytest.raises(ShardError, match=r"code/shard_00001.idx is missing"):
        ShardSet.open(folder, "fp-a")
    (folder / "manifest.json").unlink()
    with pytest.raises(ShardError, match=r"manifest.json does not exist: run `youtu data prepare`"):
        ShardSet.open(folder, "fp-a")


def test_shard_from_another_tokenizer_inside_a_folder_is_refused(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["domains"]["stem"]["shards"][0]["tokenizer"] = "fp-old"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"stem/shard_00000.bin was tokenized with tokenizer "
                                         r"fp-old but this run uses fp-a"):
        ShardSet.open(folder, "fp-a")


def test_bad_index_is_refused(folder):
    idx = folder / "code" / "shard_00000.idx"
    data = bytearray(idx.read_bytes())
    data[:8] = b"NOTANIDX"
    idx.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"shard_00000.idx has a bad header"):
        ShardSet.open(folder, "fp-a", verify_checksums=False)
