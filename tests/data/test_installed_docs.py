"""The installed-documentation part of the embedded corpus: real prose from the distributions
this very environment has installed (youtu's own dependencies guarantee some), deterministic,
capped, markup stripped, and working without /usr/share/doc."""

from __future__ import annotations

import gzip
import re
from importlib import metadata

from youtu.data.config import DataConfig, EmbeddedConfig
from youtu.data.installed_docs import (
    DOCSTRING_SLICES,
    description_documents,
    distributions,
    docstring_documents,
    installed_docs,
    strip_markdown,
    strip_rst,
)
from youtu.data.steps import plan_units

MARKDOWN = """# Fastthing

[![build](https://ci.example/badge.svg)](https://ci.example) ![logo](logo.png)

Fastthing makes **parsing** fast, see [the docs](https://docs.example/fast) for `parse()`.

```python
import fastthing
fastthing.parse("x")
```

    indented_code_block = True

| option | meaning |
|---|---|
| fast | yes |

<p align="center"><img src="x.png"></p>

- first point of the list
- second point
"""

RST = """Fastthing
=========

.. image:: https://ci.example/badge.svg
   :target: https://ci.example

Use :func:`fastthing.parse` on ``bytes``, as `the guide <https://docs.example>`_ says.
An example::

    fastthing.parse(b"x")

>>> fastthing.parse(b"y")
'y'

.. code-block:: python

    secret_code()

Back to prose after the block.
"""


def test_strip_markdown_keeps_text_drops_code_tables_images_html():
    text = strip_markdown(MARKDOWN)
    assert text.startswith("Fastthing\n\nFastthing makes parsing fast, see the docs for parse().")
    assert "- first point of the list" in text and "- second point" in text
    for gone in ("import fastthing", "indented_code_block", "option", "meaning", "<", "badge",
                 "https://", "logo", "**", "```", "|"):
        assert gone not in text, gone


def test_strip_rst_keeps_text_drops_directives_literals_doctests():
    text = strip_rst(RST)
    assert "Use fastthing.parse on bytes, as the guide says." in text
    assert "An example:" in text and "Back to prose after the block." in text
    for gone in ("=====", "badge", ":target:", 'parse(b"x")', ">>>", "'y'", "secret_code",
                 "code-block", "`", "https://"):
        assert gone not in text, gone


def test_descriptions_are_prose_of_the_installed_distributions_sorted_and_stripped(tmp_path):
    docs = list(description_documents(doc_dir=str(tmp_path / "absent")))
    names = [d.meta["distribution"] for d in docs]
    # youtu's core dependencies are installed wherever youtu is: their READMEs are here.
    assert {"numpy", "datatrove", "tqdm"} <= {n.lower() for n in names}
    keys = [re.sub(r"[-_.]+", "-", n).lower() for n in names]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {d.domain for d in docs} == {"commonsense"} and {d.source for d in docs} == {
        "package-docs"}  # the missing doc folder contributes nothing, and nothing fails
    numpy = next(d for d in docs if d.meta["distribution"].lower() == "numpy")
    assert numpy.meta["version"] == metadata.version("numpy")
    assert "NumPy" in numpy.text and "scientific computing" in numpy.text
    for d in docs:
        assert "```" not in d.text and "](http" not in d.text and "<img" not in d.text
        letters = sum(c.isalpha() for c in d.text) / len(d.text)
        assert letters > 0.5, (d.meta, d.text[:200])  # prose, not markup or tables


def test_system_readmes_read_plain_and_gzip_and_skip_other_files(tmp_path):
    (tmp_path / "pkg-a").mkdir()
    (tmp_path / "pkg-b").mkdir()
    prose = "This package provides the thing that does the work. " * 6
    (tmp_path / "pkg-a" / "README.md").write_text(f"# A\n\n{prose}\n\n```\ncode()\n```\n")
    with gzip.open(tmp_path / "pkg-b" / "README.gz", "wt") as f:
        f.write(prose)
    (tmp_path / "pkg-b" / "changelog.gz").write_bytes(gzip.compress(prose.encode()))
    docs = [d for d in description_documents(doc_dir=str(tmp_path))
            if d.source == "system-docs"]
    assert [d.meta["file"] for d in docs] == [str(tmp_path / "pkg-a" / "README.md"),
                                               str(tmp_path / "pkg-b" / "README.gz")]
    assert docs[0].text.startswith("A\n\nThis package") and "code()" not in docs[0].text
    assert docs[1].text == prose.strip()


def test_caps_are_honoured_and_the_part_is_deterministic(tmp_path):
    absent = str(tmp_path / "absent")
    a = list(installed_docs(description_chars=30_000, doc_dir=absent))
    b = list(installed_docs(description_chars=30_000, doc_dir=absent))
    assert [d.text for d in a] == [d.text for d in b]
    assert 0.5 * 30_000 < sum(len(d.text) for d in a) <= 30_000
    # Docstrings: one slice of many (cheap), capped, real prose of third-party modules.
    s = list(installed_docs(docstring_chars=20_000, slice_index=1, slices=200))
    assert s and 0.5 * 20_000 < sum(len(d.text) for d in s) <= 20_000
    assert {d.source for d in s} == {"package-docstrings"}
    assert [d.text for d in s] == [d.text for d in installed_docs(
        docstring_chars=20_000, slice_index=1, slices=200)]
    assert all(">>>" not in d.text for d in s)
    assert list(installed_docs(doc_dir=absent)) == []  # both caps 0: off


def test_docstring_slices_partition_the_modules():
    full = [(d.meta["distribution"], d.meta["file"], d.text)
            for d in docstring_documents(0, 200)]
    halves = [(d.meta["distribution"], d.meta["file"], d.text)
              for i in (0, 200) for d in docstring_documents(i, 400)]
    assert full and sorted(full) == sorted(halves)  # slice 0 of 200 = slices 0 and 200 of 400


def test_plan_units_reads_installed_docs_as_embedded_parts():
    off = plan_units(DataConfig(embedded=EmbeddedConfig(stem_chars=1000)), [])
    assert [u.kind for u in off] == ["embedded"] * 3
    cfg = DataConfig(embedded=EmbeddedConfig(stem_chars=1000, packages_chars=5000,
                                             package_docstrings_chars=8 * 1000, doc_dir=""))
    units = [u for u in plan_units(cfg, []) if u.kind == "installed"]
    assert len(units) == 1 + DOCSTRING_SLICES
    assert units[0].args == {"description_chars": 5000, "doc_dir": ""}
    assert [u.args["slice_index"] for u in units[1:]] == list(range(DOCSTRING_SLICES))
    first = list(units[0].documents())
    assert first and sum(len(d.text) for d in first) <= 5000
    assert [d.text for d in first] == [d.text for d in installed_docs(description_chars=5000,
                                                                       doc_dir="")]
    assert first[0].meta["distribution"] in {d.metadata["Name"] for d in distributions()}


def test_prepare_reads_the_part_and_decontaminates_it(tmp_path, tokenizer):
    from youtu.data.prepare import prepare

    emb = EmbeddedConfig(code_chars=0, prose_chars=0, stem_chars=0, packages_chars=40_000,
                         doc_dir="")
    docs = list(installed_docs(description_chars=40_000, doc_dir=""))
    # An eval item quoted from one of the documents: that document must not reach the shards.
    target = max(docs, key=lambda d: len(d.text.split()))
    item = " ".join(target.text.split()[20:60])
    manifest = prepare(DataConfig(embedded=emb, workers=0), tokenizer, tmp_path / "out",
                       eval_texts=[item])
    assert manifest["sources"]["package-docs"]["read"] == len(docs)
    assert 0 < manifest["sources"]["package-docs"]["commonsense"] < len(docs)
    assert manifest["filters"]["decontam"]["removed_docs"] >= 1
