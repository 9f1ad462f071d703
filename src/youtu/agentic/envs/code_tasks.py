"""Python function task families for the code environment: spec, references, real bugs, inputs.

    fam = FAMILIES[0]
    v = variant(fam, random.Random(3))       # a concrete task: names, docstring, strategy drawn
    v.fn, v.signature, v.reference, v.bugs    # per seed

Each `Family` has reference implementations (several solution strategies), buggy variants of
the kind people really write (off-by-one, a forgotten edge case, wrong logic) with a one-line
explanation and a kind, and an input generator. `variant` draws one task from a family: the
function name, the parameter and local variable names (renamed consistently in the reference
and every bug through the AST, so a bug stays the same bug), the docstring's phrasing and the
reference's strategy. The code environment computes expected outputs by running the reference
in the host (it is our code), and keeps only bugs that the visible tests actually catch, so a
controlled mistake always produces an observed failure. The families are in
`code_families_core.py` and `code_families.py`; `Family` is defined in `code_spec.py`.
"""

from __future__ import annotations

import ast
import builtins
import random
import string
from dataclasses import replace
from typing import Any

from youtu.agentic.envs.code_families import MORE_FAMILIES
from youtu.agentic.envs.code_families_core import CORE_FAMILIES
from youtu.agentic.envs.code_spec import BUG_KINDS, Family, _ints, _src

__all__ = ["BUG_KINDS", "FAMILIES", "SYNONYMS", "Family", "_ints", "_src", "call_repr", "rename",
           "variant"]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "xs": ("xs", "values", "items", "nums", "seq", "data", "arr"),
    "s": ("s", "text", "word", "string", "line"),
    "n": ("n", "limit", "count", "size", "num"),
    "k": ("k", "step", "factor", "shift", "m"),
    "out": ("out", "result", "res", "acc", "collected"),
    "i": ("i", "idx", "pos"), "j": ("j", "end", "stop"),
    "ch": ("ch", "c", "char", "letter"),
    "x": ("x", "v", "item", "value", "elem"),
    "seen": ("seen", "visited", "known"),
    "stack": ("stack", "pending", "opened"),
    "pairs": ("pairs", "closing", "match"),
    "lo": ("lo", "left", "low"), "hi": ("hi", "right", "high"),
    "mid": ("mid", "middle", "m_idx"),
    "target": ("target", "key", "needle", "wanted"),
    "intervals": ("intervals", "spans", "ranges", "segments"),
    "start": ("start", "a", "begin"), "end": ("end", "b", "finish"),
    "best": ("best", "top", "current"),
    "nested": ("nested", "tree", "items", "lists"),
    "item": ("item", "node", "elem"),
    "values": ("values", "uniq", "ordered"),
    "base": ("base", "origin", "offset"),
    "count": ("count", "run", "length"),
    "prev": ("prev", "last", "current"),
    "d": ("d", "digit"), "total": ("total", "acc", "running"),
    "words": ("words", "tokens", "parts"), "w": ("w", "word", "tok"),
    "counts": ("counts", "freq", "tally", "histogram"),
    "key": ("key", "name", "label"), "row": ("row", "record", "entry"),
    "rows": ("rows", "records", "entries", "table"),
    "matrix": ("matrix", "grid", "m", "board"),
    "a": ("a", "first", "left"), "b": ("b", "second", "right"),
    "width": ("width", "cols", "ncols"), "acc": ("acc", "running", "total"),
}
"""Alternative names per identifier (the first is the original)."""


class _Rename(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self.mapping.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self.mapping.get(node.name, node.name)
        self.generic_visit(node)
        return node


def rename(source: str, mapping: dict[str, str]) -> str:
    """`source` with identifiers renamed (definitions, arguments, uses), its layout kept: the
    names are replaced at the AST's positions, and the result must parse to the AST-renamed
    tree (else that tree is unparsed, which normalises the layout)."""
    if not mapping:
        return source
    tree = ast.parse(source)
    lines = source.split("\n")
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            edits.append((node.lineno, node.col_offset, node.id))
        elif isinstance(node, ast.arg) and node.arg in mapping:
            edits.append((node.lineno, node.col_offset, node.arg))
        elif isinstance(node, ast.FunctionDef) and node.name in mapping:
            line = lines[node.lineno - 1]
            edits.append((node.lineno, line.index(node.name, node.col_offset + 4), node.name))
    for row, col, old in sorted(edits, reverse=True):
        line = lines[row - 1]
        if line[col:col + len(old)] == old:
            lines[row - 1] = line[:col] + mapping[old] + line[col + len(old):]
    out = "\n".join(lines)
    want = _Rename(mapping).visit(tree)
    try:
        if ast.dump(ast.parse(out)) == ast.dump(want):
            return out
    except SyntaxError:
        pass
    return ast.unparse(want) + "\n"


def _identifiers(source: str) -> set[str]:
    tree = ast.parse(source)
    return ({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            | {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
            | {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)})


def variant(fam: Family, rng: random.Random) -> Family:
    """One concrete task of `fam`: name, identifiers, spec phrasing and strategy drawn by `rng`
    (the result has no alternatives left). Bugs are renamed with the same mapping."""
    reference = rng.choice((fam.reference, *fam.strategies))
    sources = [reference, *(b[0] for b in fam.bugs)]
    used = set().union(*(_identifiers(s) for s in sources)) | set(dir(builtins))
    mapping: dict[str, str] = {}
    fn = rng.choice((fam.fn, *fam.names))
    if fn != fam.fn and fn not in used:
        mapping[fam.fn] = fn
    taken = set(used)
    for ident in sorted(_identifiers(reference) - {fam.fn}):
        options = [o for o in SYNONYMS.get(ident, ()) if o == ident or o not in taken]
        if options:
            new = rng.choice(options)
            taken.add(new)
            if new != ident:
                mapping[ident] = new
    sig = rename(fam.signature + "\n    pass\n", mapping).split("\n")[0]
    names = {k: mapping.get(k, k) for k in used}
    doc = string.Template(rng.choice((fam.doc, *fam.docs))).safe_substitute(names)
    bugs = tuple((rename(src, mapping), string.Template(why).safe_substitute(names), kind)
                 for src, why, kind in fam.bugs)
    return replace(fam, fn=mapping.get(fam.fn, fam.fn), signature=sig, doc=doc,
                   reference=rename(reference, mapping), bugs=bugs, names=(), docs=(),
                   strategies=())


def call_repr(fn: str, args: tuple[Any, ...]) -> str:
    return f"{fn}({', '.join(repr(a) for a in args)})"


FAMILIES: list[Family] = CORE_FAMILIES + MORE_FAMILIES
"""Every task family (28)."""
