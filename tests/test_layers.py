"""Imports flow one way (STYLE.md): a domain package imports only the packages below it.

Read from the source with `ast`, so a lazy import inside a function counts too; imports under
`if TYPE_CHECKING:` (type hints only) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "youtu"

# `config` is the hub of the section dataclasses and its helpers (to_dict, save_config); `errors`
# holds ConfigError. Both sit below every domain.
BASE = {"config", "configlib", "errors"}
ALLOWED = {
    "model": {"errors"},
    "tokenizer": {"errors"},
    "data": BASE | {"tokenizer"},
    "agentic": BASE | {"tokenizer"},
    "eval": BASE | {"model", "tokenizer", "agentic"},
    "serve": BASE | {"model", "tokenizer", "agentic"},
    "train": BASE | {"model", "tokenizer", "data", "agentic", "serve", "eval"},
    "rl": BASE | {"train", "serve", "agentic", "model", "tokenizer", "data"},
}


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Top-level youtu packages imported outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("youtu."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("youtu."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package):
    bad = {}
    for path in sorted((SRC / package).rglob("*.py")):
        extra = _runtime_imports(ast.parse(path.read_text())) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(SRC))] = sorted(extra)
    assert not bad, f"youtu.{package} imports packages above it: {bad}"


def test_type_checking_imports_are_not_counted():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from youtu.config import RunConfig\nelse:\n    import youtu.train.loop\n"
                     "def f():\n    from youtu.serve.engine import Engine\n")
    assert _runtime_imports(tree) == {"train", "serve"}
