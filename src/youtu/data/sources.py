"""Document sources: JSONL (plain/.gz/.zst), Parquet, text files and folders, saved HF datasets,
and the embedded default corpus the Python installation itself carries.

    from youtu.data.sources import embedded_corpus, iter_source, iter_documents
    for doc in embedded_corpus(seed=0, code_chars=100_000, prose_chars=100_000, stem_chars=50_000):
        print(doc.domain, doc.source, len(doc.text))

Every reader yields `Document`s lazily (a source never has to fit in memory) in a fixed order,
so a prepare run is deterministic. Unusable input (a missing path, a file of the wrong kind, a
record without its text field, invalid JSON, non-UTF-8 or corrupt compressed data) raises
`youtu.errors.ConfigError` (a ValueError) naming the file (and line/row), the `[[data.sources]]`
key involved (path, kind, text_field, domain_field, split) and the fix.
"""

from __future__ import annotations

import ast
import functools
import gzip
import io
import json
import logging
import random
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from youtu.data.config import DataConfig, SourceConfig, check_domain
from youtu.data.document import Document
from youtu.data.stem import worksheet
from youtu.errors import ConfigError

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".zst")
HF_MARKERS = ("dataset_dict.json", "state.json")
"""Files `datasets.Dataset(Dict).save_to_disk` writes at the top of its folder."""


# ---------------------------------------------------------------------------------------------
# readers


def _open_text(path: Path) -> io.TextIOBase:
    """Text stream over a plain, gzip or zstandard file."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.TextIOWrapper(raw, encoding="utf-8")
    return open(path, encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file; decoding and decompression failures as ConfigError."""
    corrupt: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile)
    if path.suffix == ".zst":
        import zstandard

        corrupt += (zstandard.ZstdError,)
    lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                yield lineno, line
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}:{lineno + 1}: not UTF-8 text ({e.reason}); re-encode the file "
                          f"as UTF-8, or fix [[data.sources]] path") from e
    except corrupt as e:
        raise ConfigError(f"{path}: corrupt or truncated {path.suffix} file ({e}); re-create it, "
                          f"or fix [[data.sources]] path") from e


def _record_doc(record: Any, where: str, text_field: str, domain: str, domain_field: str,
                source: str, meta: dict) -> Document | None:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object per record, got "
                          f"{type(record).__name__}; each record needs a {text_field!r} field "
                          f"(for plain text, set kind = \"text\" in the [[data.sources]] entry)")
    if text_field not in record:
        raise ConfigError(f"{where}: no field {text_field!r} (fields: "
                          f"{', '.join(sorted(record))}); set text_field in the [[data.sources]] "
                          f"entry to the field that holds the text")
    text = record[text_field]
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{where}: field {text_field!r} is a {type(text).__name__}, not text; "
                          f"set text_field in the [[data.sources]] entry to a text field")
    if domain_field:
        domain = str(record.get(domain_field) or "auto").lower()
        # The domain names a shard folder: a record must not pick "../x" or "heldout".
        check_domain(domain, f"{where}: field {domain_field!r} (the [[data.sources]] "
                             f"domain_field)", allow_auto=True)
    return Document(text=text, domain=domain, source=source, meta=meta)


def read_jsonl(path: str | Path, *, text_field: str = "text", domain: str = "auto",
               domain_field: str = "", source: str = "") -> Iterator[Document]:
    """One document per line of a JSONL file (plain, .gz or .zst)."""
    path = Path(path)
    source = source or path.name
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg}); every line of a .jsonl "
                              f"file must be one JSON object (for plain text, set kind = \"text\" "
                              f"in the [[data.sources]] entry)") from e
        except (ValueError, RecursionError) as e:  # a >4300-digit integer, nesting too deep
            raise ConfigError(f"{path}:{lineno}: unreadable JSON ({str(e)[:120]}); fix or drop "
                              f"the record") from e
        doc = _record_doc(record, f"{path}:{lineno}", text_field, domain, domain_field,
                          source, {"file": str(path), "line": lineno})
        if doc is not None:
            yield doc


def read_parquet(path: str | Path, *, text_field: str = "text", domain: str = "auto",
                 domain_field: str = "", source: str = "", batch_rows: int = 4096
                 ) -> Iterator[Document]:
    """One document per row of a Parquet file, read in record batches (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    source = source or path.name
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowInvalid as e:
        raise ConfigError(f"{path}: not a Parquet file ({e}); fix [[data.sources]] path, or set "
                          f"its kind to the file's format (jsonl, text)") from e
    names = pf.schema_arrow.names
    if text_field not in names:
        raise ConfigError(f"{path}: no column {text_field!r} (columns: {', '.join(names)}); "
                          f"set text_field in the [[data.sources]] entry to the text column")
    columns = [text_field] + ([domain_field] if domain_field and domain_field in names else [])
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        for record in batch.to_pylist():
            doc = _record_doc(record, f"{path} row {row}", text_field, domain, domain_field,
                              source, {"file": str(path), "row": row})
            row += 1
            if doc is not None:
                yield doc


def read_hf(path: str | Path, *, split: str = "train", text_field: str = "text",
            domain: str = "auto", domain_field: str = "", source: str = "") -> Iterator[Document]:
    """One document per row of a `datasets` Dataset (or DatasetDict split) saved to disk."""
    from datasets import DatasetDict, load_from_disk

    path = Path(path)
    source = source or path.name
    try:
        ds = load_from_disk(str(path))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: not a dataset saved by `datasets` save_to_disk ({e}); fix "
                          f"[[data.sources]] path, or set its kind (jsonl, parquet, text)") from e
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise ConfigError(f"{path}: no split {split!r} (splits: {', '.join(ds)}); set split "
                              f"in the [[data.sources]] entry")
        ds = ds[split]
    if text_field not in ds.column_names:
        raise ConfigError(f"{path}: no column {text_field!r} (columns: "
                          f"{', '.join(ds.column_names)}); set text_field in the [[data.sources]] "
                          f"entry to the text column")
    for row, record in enumerate(ds):
        doc = _record_doc(record, f"{path} row {row}", text_field, domain, domain_field, source,
                          {"file": str(path), "row": row})
        if doc is not None:
            yield doc


def read_text(path: str | Path, *, domain: str = "auto", source: str = "",
              extensions: Iterable[str] = (".txt", ".md", ".rst")) -> Iterator[Document]:
    """A text file is one document; a folder is walked (sorted) for files with `extensions`."""
    path = Path(path)
    source = source or path.name
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in set(extensions))
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield Document(text=text, domain=domain, source=source, meta={"file": str(file)})


def _kind_of(file: Path) -> str | None:
    suffixes = file.suffixes
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in JSONL_SUFFIXES:
        return "jsonl"
    if last == ".parquet":
        return "parquet"
    return None


def iter_source(cfg: SourceConfig) -> Iterator[Document]:
    """Documents of one configured source, in a fixed order, at most `cfg.max_docs`."""
    path = Path(cfg.path)
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError(f"data source {cfg.path!r} does not exist{where}; fix [[data.sources]] "
                          f"path")
    if cfg.kind in ("jsonl", "parquet") and path.is_dir():
        raise ConfigError(f"data source {cfg.path!r} is a folder but [[data.sources]] kind is "
                          f"{cfg.kind!r}, which reads one file; name a file in path, or set "
                          f"kind = \"auto\" to read the folder's files by their suffixes")
    if cfg.kind == "hf" and not path.is_dir():
        raise ConfigError(f"data source {cfg.path!r} is a file but [[data.sources]] kind is "
                          f"'hf', which reads a folder written by `datasets` save_to_disk; fix "
                          f"path, or set kind = \"auto\"")
    name = cfg.name or path.name
    fields = dict(text_field=cfg.text_field, domain=cfg.domain, domain_field=cfg.domain_field,
                  source=name)
    kind = cfg.kind
    if kind == "auto" and path.is_dir() and any((path / m).exists() for m in HF_MARKERS):
        kind = "hf"
    if kind == "hf":
        docs: Iterator[Document] = read_hf(path, split=cfg.split, **fields)
    elif kind == "text":
        docs = read_text(path, domain=cfg.domain, source=name, extensions=cfg.extensions)
    elif kind in ("jsonl", "parquet") or path.is_file():
        docs = _read_files([path], kind, cfg, fields)
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        docs = _read_files(files, "auto", cfg, fields)
    for n, doc in enumerate(docs):
        if cfg.max_docs and n >= cfg.max_docs:
            return
        yield doc


def _read_files(files: list[Path], kind: str, cfg: SourceConfig, fields: dict
                ) -> Iterator[Document]:
    for file in files:
        file_kind = kind if kind != "auto" else _kind_of(file)
        if file_kind == "jsonl":
            yield from read_jsonl(file, **fields)
        elif file_kind == "parquet":
            yield from read_parquet(file, **fields)
        elif file.suffix in cfg.extensions or len(files) == 1:
            yield from read_text(file, domain=cfg.domain, source=fields["source"])


# ---------------------------------------------------------------------------------------------
# embedded corpus

EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test",
                 "lib2to3", "lib-dynload", "ensurepip", "encodings", "turtledemo", "__phello__"}
"""Not part of the embedded corpus: third-party packages, test suites (deliberately odd code),
and `encodings` (generated charmap tables, not code anyone writes)."""


@functools.lru_cache(maxsize=1)
def stdlib_files() -> tuple[Path, ...]:
    """The standard library's own .py files, sorted (third-party packages and tests excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).parts
        if any(part in EXCLUDED_DIRS or part.startswith("config-") for part in rel[:-1]):
            continue
        if rel[-1].startswith("_sysconfigdata"):
            continue
        files.append(p)
    return tuple(sorted(files))


def _module_name(path: Path) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_prose(source: str) -> list[str]:
    """Docstrings (module, classes, functions) and multi-line comment blocks of a module."""
    paragraphs = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                paragraphs.append(doc)
    # Full-line comment blocks by a line scan: 3x faster than `tokenize`, and inline comments
    # ("x = 1  # noqa") are rarely prose anyway.
    block: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            text = stripped.lstrip("#").strip()
            if text:
                block.append(text)
                continue
        if block:
            paragraphs.append(" ".join(block))
            block = []
    if block:
        paragraphs.append(" ".join(block))
    # One-line comments ("# XXX", "# noqa") are not prose: keep blocks of at least 8 words.
    # Overriding methods often repeat their base's docstring word for word: keep the first.
    return list(dict.fromkeys(p for p in paragraphs if len(p.split()) >= 8))


def _pydoc_topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return sorted(topics.items())


STEM_SLICE_CHARS = 2_500_000
"""The generated worksheets come in slices of this many characters, each drawn from its own
seed (slice 0 from today's `stem-<seed>`, so caps up to one slice give the same documents as
before), so that the data step's tasks share a large stem cap: one 20 M-character stream was
one task of 14 s beside seven of 1-5 s (configs/small.toml on 2 cores), and 200 M
(configs/youtu-2b.toml) would be one task however many workers ran."""


def stem_slices(stem_chars: int) -> int:
    """How many slices of `STEM_SLICE_CHARS` a stem cap is read as (at least one)."""
    return max(1, -(-stem_chars // STEM_SLICE_CHARS))


def embedded_corpus(seed: int, *, code_chars: int = 2_000_000, prose_chars: int = 1_500_000,
                    stem_chars: int = 1_000_000, problems_per_doc: int = 8,
                    stem_slice: int | None = None) -> Iterator[Document]:
    """The default corpus: no download, deterministic for a given seed (and Python version).

    Args:
        seed: Picks the order in which stdlib files are taken and the generated problems.
        code_chars: Cap on `code` documents (one stdlib .py file each), in characters.
        prose_chars: Cap on `commonsense` documents (pydoc topics, then per-module docstrings
            and comment blocks), in characters.
        stem_chars: Cap on `stem` documents (worksheets of worked problems), in characters.
        problems_per_doc: Worked problems per stem document.
        stem_slice: Only this slice of the stem part (`STEM_SLICE_CHARS` of the cap each, its
            own seed); None = every slice in order. The slices together are the whole part.

    Yields:
        Documents, code first, then prose, then stem. Caps stop before the document that
        would cross them, so each domain stays at or under its cap.
    """
    files = list(stdlib_files()) if code_chars or prose_chars else []
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    rng = random.Random(seed)
    code_order = files[:]
    rng.shuffle(code_order)
    used = 0
    for path in code_order if code_chars else ():
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip() or used + len(text) > code_chars:
            continue
        used += len(text)
        yield Document(text=text, domain="code", source="stdlib",
                       meta={"module": _module_name(path), "python": version})

    used = 0
    prose: list[tuple[str, dict]] = [(body, {"topic": name}) for name, body in _pydoc_topics()]
    rng.shuffle(prose)
    prose_order = files[:]
    rng.shuffle(prose_order)
    for text, meta in _prose_stream(prose, prose_order) if prose_chars else ():
        if used + len(text) > prose_chars:
            if used > prose_chars * 0.95:  # close enough; each further file costs ~10 ms to parse
                break
            continue
        used += len(text)
        yield Document(text=text, domain="commonsense", source="stdlib-docs",
                       meta={**meta, "python": version})

    n = stem_slices(stem_chars)
    for i in range(n) if stem_slice is None else (stem_slice,):
        if not 0 <= i < n:
            raise ValueError(f"stem_slice={i} is outside 0..{n - 1} for stem_chars={stem_chars}")
        cap = min(STEM_SLICE_CHARS, stem_chars - i * STEM_SLICE_CHARS)
        yield from _stem_worksheets(random.Random(f"stem-{seed}" + (f"-{i}" if i else "")), cap,
                                    problems_per_doc)


def _stem_worksheets(rng: random.Random, cap: int, problems_per_doc: int) -> Iterator[Document]:
    used = 0
    while used < cap:
        text, problems = worksheet(rng, problems_per_doc)
        if used + len(text) > cap:
            break
        used += len(text)
        yield Document(text=text, domain="stem", source="generated-stem",
                       meta={"kinds": [p.kind for p in problems],
                             "answers": [p.answer for p in problems]})


def _prose_stream(topics: list[tuple[str, dict]], files: list[Path]
                  ) -> Iterator[tuple[str, dict]]:
    yield from topics
    for path in files:
        paragraphs = module_prose(path.read_text(encoding="utf-8", errors="replace"))
        if paragraphs:
            yield "\n\n".join(paragraphs), {"module": _module_name(path)}


def iter_documents(cfg: DataConfig) -> Iterator[Document]:
    """Every configured document before filtering: the embedded corpus (when enabled; with the
    installed packages' docs in the same units as prepare reads them), then each
    `[[data.sources]]` entry in order. Used by `prepare` and by tokenizer training."""
    e = cfg.embedded
    if e.enabled:
        yield from embedded_corpus(cfg.seed, code_chars=e.code_chars, prose_chars=e.prose_chars,
                                   stem_chars=e.stem_chars, problems_per_doc=e.problems_per_doc)
        if e.packages_chars or e.package_docstrings_chars:
            from youtu.data.installed_docs import DOCSTRING_SLICES, installed_docs

            yield from installed_docs(description_chars=e.packages_chars, doc_dir=e.doc_dir)
            for i in range(DOCSTRING_SLICES if e.package_docstrings_chars else 0):
                yield from installed_docs(
                    docstring_chars=e.package_docstrings_chars // DOCSTRING_SLICES,
                    slice_index=i, slices=DOCSTRING_SLICES)
    for source in cfg.sources:
        yield from iter_source(source)
