"""The documentation every machine with this package installed has offline: the long
descriptions (README text) in the METADATA of each installed Python distribution, the README
files under /usr/share/doc where the OS kept them, and the docstrings and comment blocks of the
installed third-party modules. A part of the embedded corpus (domain commonsense).

    from youtu.data.installed_docs import installed_docs
    for doc in installed_docs(description_chars=2_000_000, docstring_chars=0):
        print(doc.meta["distribution"], len(doc.text))

Measured on the development machine (143 distributions, Python 3.11, 2026-12-04): descriptions
1.76 MB before markup stripping, /usr/share/doc READMEs ~0.3 MB, third-party docstrings ~67 MB
(16.8k modules, ~96 s of parsing on one core). Markdown is read with markdown-it-py and rst by
line rules; code blocks, doctests, tables, images, HTML and link targets are dropped (code has its
own, larger source in the stdlib). Order is fixed: distributions sorted by normalised name, each
distribution's files sorted, so a run is deterministic for a given set of installed packages
(`installed_fingerprint` names that set for the prepare cache key).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from youtu.data.document import Document

DOC_DIR = "/usr/share/doc"
"""Where Debian/Ubuntu/Fedora keep package READMEs; often absent (or emptied) in containers."""
MIN_DOC_CHARS = 200
"""Shorter texts after stripping ("A package.", a lone badge line) are no prose worth a doc."""
SKIP_DIRS = {"test", "tests", "testing", "_vendor", "vendor", "__pycache__", "_build"}
"""Module folders left out: test suites (odd code on purpose), vendored copies of other packages."""
DOCSTRING_SLICES = 8
"""The docstring part is read as this many independent units (file j in slice j % 8, each with
1/8 of the cap) so prepare's workers share its ~1.4 s/MB of parsing; fixed, so the documents do
not depend on the worker count."""


# ---------------------------------------------------------------------------------------------
# markup to prose

_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")
_RST_TABLE_RULE = re.compile(r"^(\+[-=+]+|=+( +=+)+)$")
_RST_ROLE = re.compile(r":[\w:+.-]+:`([^`]*)`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")
_RST_REF = re.compile(r"`([^`]+)`_{1,2}")
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_SUBST = re.compile(r"\|\w[\w -]*(?<! )\|_{0,2}")  # |badge|, not a table cell
_URL_ONLY = re.compile(r"^\s*(<?https?://\S+>?|\S+\.(svg|png|gif)\S*)\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def strip_rst(text: str) -> str:
    """reStructuredText (and Python docstrings) to plain prose: directives with their bodies,
    literal blocks after `::`, doctests, tables, heading underlines and substitutions dropped;
    roles, links and ``literals`` reduced to their text."""
    out: list[str] = []
    skip_deeper_than: int | None = None  # drop lines indented deeper than this (a block body)
    doctest = False
    for line in text.expandtabs(4).splitlines():
        stripped = line.strip()
        if skip_deeper_than is not None:
            if not stripped or _indent(line) > skip_deeper_than:
                continue
            skip_deeper_than = None
        if doctest:
            if stripped:  # doctest output runs to the next blank line
                continue
            doctest = False
        if stripped.startswith((">>>", "...")) and not stripped.startswith("...."):
            doctest = True
            continue
        if stripped.startswith(".."):  # directive, comment, target, substitution definition
            skip_deeper_than = _indent(line)
            continue
        if _RST_UNDERLINE.match(line) or _RST_TABLE_RULE.match(stripped) or (
                stripped.startswith("|") and not _RST_SUBST.match(stripped)):
            continue  # a heading underline, a table (grid or simple) border or row
        if stripped.endswith("::"):  # "Example::" introduces a literal block
            skip_deeper_than = _indent(line)
            line = line.rstrip()[:-2].rstrip()
            if line.endswith((" ", ":")) or not line.strip():
                continue
            line += ":"
        line = _RST_ROLE.sub(r"\1", line)
        line = _RST_LINK.sub(r"\1", line)
        line = _RST_REF.sub(r"\1", line)
        line = _RST_LITERAL.sub(r"\1", line)
        line = _RST_SUBST.sub("", line)
        if _URL_ONLY.match(line):
            continue
        out.append(line.rstrip())
    return _tidy("\n".join(out))


@functools.lru_cache(maxsize=1)
def _markdown_parser():
    try:
        from markdown_it import MarkdownIt
    except ImportError as e:  # a core dependency; only a broken install lacks it
        raise ImportError("reading package descriptions needs markdown-it-py: "
                          "pip install markdown-it-py") from e
    return MarkdownIt("commonmark").enable("table")


def strip_markdown(text: str) -> str:
    """Markdown to plain prose through markdown-it-py: headings, paragraphs, list items and
    quotes keep their text; fenced/indented code, HTML, tables and images are dropped; links
    keep their text."""
    paragraphs: list[str] = []
    skip = 0  # depth inside a dropped container (tables)
    bullet = ""
    for tok in _markdown_parser().parse(text):
        if tok.type == "table_open":
            skip += 1
        elif tok.type == "table_close":
            skip -= 1
        elif tok.type == "list_item_open":
            bullet = "- "
        elif tok.type == "inline" and not skip:
            parts = []
            for child in tok.children or ():
                if child.type in ("text", "code_inline"):
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append(" ")
            line = "".join(parts).strip()
            if line and not _URL_ONLY.match(line):
                paragraphs.append(bullet + line)
            bullet = ""
    return _tidy("\n\n".join(paragraphs))


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def to_prose(text: str, content_type: str = "") -> str:
    """A distribution's description as prose. `content_type` is its Description-Content-Type
    (text/markdown, text/x-rst, text/plain); when absent (PEP 566 then means rst, but many
    packages ship Markdown without saying so) the markup is guessed from the text."""
    kind = content_type.split(";")[0].strip().lower()
    if not kind:
        if "```" in text or re.search(r"^#{1,6} |\]\(", text, re.MULTILINE):
            kind = "text/markdown"
        elif re.search(r"^\.\. |^[=\-~]{4,}\s*$", text, re.MULTILINE):
            kind = "text/x-rst"
        else:
            kind = "text/plain"
    if kind == "text/markdown":
        return strip_markdown(text)
    if kind == "text/x-rst":
        return strip_rst(text)
    return _tidy(text)


# ---------------------------------------------------------------------------------------------
# what is installed


@functools.lru_cache(maxsize=1)
def distributions() -> tuple[metadata.Distribution, ...]:
    """Installed distributions, one per normalised name (the first on sys.path: the one that
    imports), sorted by that name."""
    seen: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist)
    return tuple(seen[k] for k in sorted(seen))


def installed_fingerprint() -> str:
    """A hash of the installed (name, version) pairs: installing or upgrading a package changes
    the documents this part yields, so prepare's cache key includes it."""
    pairs = [(d.metadata["Name"], d.version) for d in distributions()]
    return hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]


def _description(dist: metadata.Distribution) -> str:
    md = dist.metadata
    body = md.get_payload() if hasattr(md, "get_payload") else ""
    return (body or md.get("Description") or "").strip()


def _doc_files(doc_dir: str) -> list[Path]:
    root = Path(doc_dir)
    if not doc_dir or not root.is_dir():
        return []
    # READMEs only: the rest of /usr/share/doc is changelogs and copyright files (measured here:
    # 16 MB of .md/.txt, 5.8 MB of it Node.js changelogs), which are no prose.
    try:
        return sorted(p for p in root.glob("*/README*") if p.is_file())
    except OSError:
        return []


def _read_doc(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                return f.read()
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError):
        return ""


def description_documents(doc_dir: str = DOC_DIR) -> Iterator[Document]:
    """Each distribution's description (sorted by name), then each /usr/share/doc README
    (sorted by path; none where the folder is missing), as commonsense prose."""
    for dist in distributions():
        text = to_prose(_description(dist), dist.metadata.get("Description-Content-Type") or "")
        if len(text) >= MIN_DOC_CHARS:
            yield Document(text=text, domain="commonsense", source="package-docs",
                           meta={"distribution": dist.metadata["Name"], "version": dist.version})
    for path in _doc_files(doc_dir):
        name = path.name.removesuffix(".gz")
        kind = "text/markdown" if name.endswith((".md", ".markdown")) else (
            "text/x-rst" if name.endswith(".rst") else "")
        text = to_prose(_read_doc(path), kind)
        if len(text) >= MIN_DOC_CHARS:
            yield Document(text=text, domain="commonsense", source="system-docs",
                           meta={"file": str(path)})


@functools.lru_cache(maxsize=1)
def module_files() -> tuple[tuple[str, Path], ...]:
    """(distribution name, .py file) of every installed distribution's modules, in order
    (distributions by name, files by path), test suites and vendored copies left out.

    Read from each distribution's RECORD: ~0.3 s for 16k modules here."""
    out = []
    for dist in distributions():
        name = dist.metadata["Name"]  # parsed anew on every access: once per distribution
        base = Path(dist.locate_file(""))
        files = sorted({str(f) for f in dist.files or () if str(f).endswith(".py")})
        for f in files:
            parts = f.split("/")
            if parts[0] != ".." and not SKIP_DIRS.intersection(parts[:-1]):
                out.append((name, base / f))
    return tuple(out)


def docstring_documents(slice_index: int = 0, slices: int = 1) -> Iterator[Document]:
    """One document per installed third-party module with prose (docstrings and comment blocks,
    rst stripped), for the modules `slice_index, slice_index + slices, ...` of `module_files`."""
    from youtu.data.sources import module_prose

    for name, path in module_files()[slice_index::slices]:
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:  # a RECORD entry whose file was removed
            continue
        text = "\n\n".join(p for p in (strip_rst(x) for x in module_prose(source)) if p)
        if len(text) >= MIN_DOC_CHARS:
            yield Document(text=text, domain="commonsense", source="package-docstrings",
                           meta={"distribution": name, "file": path.name})


def installed_docs(*, description_chars: int = 0, docstring_chars: int = 0,
                   doc_dir: str = DOC_DIR, slice_index: int = 0, slices: int = 1
                   ) -> Iterator[Document]:
    """The installed-documentation part of the embedded corpus, capped.

    Args:
        description_chars: Cap on distribution descriptions plus /usr/share/doc READMEs, in
            characters after stripping; 0 = none of them.
        docstring_chars: Cap on this slice's third-party docstring documents, in characters.
        doc_dir: The OS documentation folder ("" = skip it); a missing folder yields nothing.
        slice_index, slices: Which docstring slice to read (see `DOCSTRING_SLICES`).

    Yields:
        Descriptions first, then docstrings; a cap stops before the document that would cross
        it (smaller later ones may still fit), so each stays at or under its cap.
    """
    for cap, docs in ((description_chars, description_documents(doc_dir) if description_chars
                       else iter(())),
                      (docstring_chars, docstring_documents(slice_index, slices) if docstring_chars
                       else iter(()))):
        used = 0
        for doc in docs:
            if used + len(doc.text) > cap:
                if used > cap * 0.95:  # close enough: each further module costs parsing time
                    break
                continue
            used += len(doc.text)
            yield doc
