"""Hermetic corpora for tokenizer tests, all from the installed environment: prose (pydoc
topics), code (stdlib source), STEM (sympy docstrings), plus a small trained tokenizer."""

from __future__ import annotations

import functools
import re
import sysconfig
import zlib
from pathlib import Path

import pytest

from youtu.tokenizer.train import train_from_texts

DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)
STEM_PACKAGES = ("functions", "integrals", "series", "physics", "stats", "matrices", "calculus",
                 "ntheory", "solvers")


@functools.lru_cache(maxsize=1)
def _sympy_docs() -> list[tuple[str, str]]:
    """(file, its long docstrings): real math/physics prose with LaTeX and formulas."""
    import sympy

    root = Path(sympy.__file__).parent
    docs = []
    for package in STEM_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "tests" in path.parts:
                continue
            strings = [d for d in DOCSTRING.findall(path.read_text(encoding="utf-8")) if len(d) > 200]
            if strings:
                docs.append((path.relative_to(root).as_posix(), "\n\n".join(strings)[:20000]))
    return docs


@pytest.fixture(scope="session")
def prose_texts() -> list[str]:
    from pydoc_data.topics import topics

    return [body for _, body in sorted(topics.items())]


@pytest.fixture(scope="session")
def code_texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:60]
    return [p.read_text(encoding="utf-8", errors="replace")[:8000] for p in files]


@pytest.fixture(scope="session")
def stem_texts() -> list[str]:
    """About 150k characters of sympy docstrings (4 of every 5 files, by name hash)."""
    texts, chars = [], 0
    for name, text in _sympy_docs():
        if zlib.crc32(name.encode()) % 5 and chars < 150_000:
            texts.append(text)
            chars += len(text)
    return texts


@pytest.fixture(scope="session")
def stem_heldout() -> list[str]:
    """Sympy docstrings of the other files (never in `stem_texts`)."""
    return [text for name, text in _sympy_docs() if zlib.crc32(name.encode()) % 5 == 0]


@pytest.fixture(scope="session")
def tok(prose_texts, code_texts, stem_texts):
    """A 1024-id single-stage tokenizer on ~0.6 MB of mixed text (under a second)."""
    return train_from_texts(prose_texts[:40] + code_texts[:30] + stem_texts, 1024)
