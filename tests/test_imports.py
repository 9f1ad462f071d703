"""Imports flow one way: each package imports only what DESIGN.md's layering table names.

Read from the source with `ast`, so a lazy import inside a function counts too; imports under
`if TYPE_CHECKING:` (type hints only) do not count for the package table.

The run config (`youtu.config.RunConfig`, every section assembled) sits above every domain:
below `config.py`, `pipeline`, `commands` and `cli` only a domain's command entry point may
see it. The
rule encoded here: outside those modules the name `RunConfig` (an import, an annotation, a use)
appears only inside a function named `main` or `<something>_main`, or in a module named
`commands.py`. Every other library function takes its own section (plus seed and device).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "youtu"

TOP = {"config", "pipeline", "cli", "commands", "__main__"}
"""Modules that may import everything: the assembly, the recipe, the CLI and the command
entry points that join domains."""
BASE = {p.stem for p in SRC.glob("*.py")} - TOP - {"__init__"}
"""Below every package: every other top-level module (`errors`: ConfigError, `configlib`: the
config library, and any small helper module of that kind); they import only each other."""
ALLOWED = {  # DESIGN.md, "Imports flow one way", row for row
    "model": set(),
    "tokenizer": set(),
    "data": {"tokenizer"},
    "agentic": {"tokenizer"},
    "serve": {"model", "tokenizer", "agentic"},
    "train": {"model", "tokenizer", "data", "agentic"},
    "eval": {"model", "tokenizer", "serve", "agentic", "data"},
    "rl": {"train", "serve", "agentic", "model", "tokenizer", "data"},
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


def _run_config_outside_main(tree: ast.AST) -> list[int]:
    """Lines where `RunConfig` or `youtu.config` appears outside a `main` / `*_main` function
    (an `if TYPE_CHECKING:` import, which only serves the entry points' hints, excepted)."""
    lines: list[int] = []

    def visit(node: ast.AST, in_main: bool) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child, in_main)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_main = in_main or node.name == "main" or node.name.endswith("_main")
        if not in_main:
            if isinstance(node, ast.Name) and node.id == "RunConfig":
                lines.append(node.lineno)
            elif isinstance(node, ast.Constant) and node.value == "RunConfig":  # "RunConfig" hint
                lines.append(node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module == "youtu.config":
                lines.append(node.lineno)
            elif isinstance(node, ast.Import) and any(a.name == "youtu.config" for a in node.names):
                lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_main)

    visit(tree, False)
    return sorted(set(lines))


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def test_the_table_covers_every_package():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), "a package without a row in DESIGN.md's table"
    assert {"errors", "configlib"} <= BASE


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_row_names(package):
    bad = {}
    for path in _modules(package):
        # `youtu.config` (the RunConfig assembly) has a rule of its own, below
        extra = (_runtime_imports(ast.parse(path.read_text())) - ALLOWED[package] - BASE
                 - {package, "config"})
        if extra:
            bad[str(path.relative_to(SRC))] = sorted(extra)
    assert not bad, f"youtu.{package} imports packages its row does not name: {bad}"


@pytest.mark.parametrize("module", sorted(BASE))
def test_base_modules_import_nothing_above_them(module):
    imported = _runtime_imports(ast.parse((SRC / f"{module}.py").read_text()))
    assert imported <= BASE - {module, "configlib"}, imported


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_run_config_only_in_command_entry_points(package):
    bad = {}
    for path in _modules(package):
        if path.name == "commands.py":
            continue
        lines = _run_config_outside_main(ast.parse(path.read_text()))
        if lines:
            bad[str(path.relative_to(SRC))] = lines
    assert not bad, (f"youtu.{package} uses the whole RunConfig outside a command entry point "
                     f"(`main` / `*_main` / commands.py): {bad}; pass the section instead")


def test_type_checking_imports_are_not_counted():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from youtu.config import RunConfig\nelse:\n    import youtu.train.loop\n"
                     "def f():\n    from youtu.serve.engine import Engine\n")
    assert _runtime_imports(tree) == {"train", "serve"}


def test_run_config_rule_sees_hints_and_lazy_imports_but_not_main():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from youtu.config import RunConfig\n"
                     "def train(cfg: RunConfig): pass\n"
                     "def g():\n    import youtu.config\n"
                     "def main(cfg: 'RunConfig'):\n    from youtu.config import replace\n"
                     "def export_main(cfg: RunConfig): pass\n")
    assert _run_config_outside_main(tree) == [4, 6]
