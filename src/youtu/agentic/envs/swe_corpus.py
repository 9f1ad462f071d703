"""Real code for the issue-fixing environment: standard-library functions, AST-injected bugs and
differential tests against the original.

    fn = function("statistics", "median")                 # source + the globals it needs
    bug = inject_bug(fn, random.Random(0))                # a mutant that really differs
    bug.source, bug.what, bug.witness                     # faulty source, the change, an input
    outcome(fn.source, fn, args)                          # ('2.5', '([1, 3, 2, 8],)')

The functions (87 here, 36 more in `swe_targets`) are the pure Python implementations of
modules every CPython install has (statistics, colorsys, bisect, heapq, textwrap, string,
calendar, posixpath, ntpath, fnmatch, shlex, html, glob, urllib.parse, email.utils, ipaddress,
quopri; ftplib, getopt, tarfile, email.quoprimime, xml.sax.saxutils, ...), read from
the module's own source file with `ast` (so `bisect.bisect_left` is its Python definition even
where `_bisect` replaces it at import). Each comes with a
generator of valid inputs. A bug is one AST mutation (comparison flipped, off-by-one constant,
wrong operator, boolean operator swapped, `not` dropped, a branch dropped); a mutant counts
only if some generated input makes it behave differently from the original (return value,
exception type, or in-place changes to its arguments), found by running both on the host under
a line budget (our own code, but a mutated loop bound may not terminate).
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import importlib
import inspect
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from youtu.agentic.envs.swe_targets import MORE_TARGETS

Inputs = Callable[[random.Random], tuple]

_WORDS = ["alpha", "beta", "gamma", "delta", "tea", "cup", "red", "blue", "data", "node",
          "x", "y", "lorem", "ipsum", "río", "naïve", "a b", "it's", "say \"hi\""]
_SEGMENTS = ["usr", "lib", "..", ".", "", "home", "tmp", "a.txt", "b.tar.gz", ".hidden",
             "src", "x.py", "docs"]


def _ints(rng: random.Random, lo: int = 1, hi: int = 8, a: int = -20, b: int = 60) -> list:
    return [rng.randint(a, b) for _ in range(rng.randint(lo, hi))]


def _nums(rng: random.Random, lo: int = 1, hi: int = 8) -> list:
    if rng.random() < 0.5:
        return _ints(rng, lo, hi)
    return [round(rng.uniform(-10, 40), 1) for _ in range(rng.randint(lo, hi))]


def _pos(rng: random.Random) -> tuple:
    return ([rng.choice([rng.randint(1, 50), round(rng.uniform(0.5, 20), 2)])
             for _ in range(rng.randint(1, 7))],)


def _pair(rng: random.Random) -> tuple:
    n = rng.randint(2, 7)
    return ([rng.randint(-9, 30) for _ in range(n)], [rng.randint(-9, 30) for _ in range(n)])


def _rgb(rng: random.Random) -> tuple:
    return tuple(rng.choice([0.0, 1.0, round(rng.random(), 2)]) for _ in range(3))


def _sorted_x(rng: random.Random) -> tuple:
    return (sorted(_ints(rng, 0, 8, 0, 20)), rng.randint(-1, 21))


def _heap_x(rng: random.Random) -> tuple:
    return (sorted(_ints(rng, 1, 8, 0, 20)), rng.randint(0, 21))


def _text(rng: random.Random) -> str:
    indent = rng.choice(["", " ", "  ", "    ", "\t"])
    lines = []
    for _ in range(rng.randint(1, 5)):
        extra = rng.choice(["", "", " ", "  "])
        words = " ".join(rng.choice(_WORDS[:14]) for _ in range(rng.randint(0, 4)))
        lines.append(indent + extra + words if words or rng.random() < 0.7 else "")
    return "\n".join(lines) + rng.choice(["", "\n"])


def _path(rng: random.Random) -> str:
    parts = [rng.choice(_SEGMENTS) for _ in range(rng.randint(1, 5))]
    return rng.choice(["", "/", "//"]) + "/".join(parts)


def _words(rng: random.Random) -> str:
    return rng.choice([" ", "  ", "\t", " - "]).join(rng.choice(_WORDS)
                                                    for _ in range(rng.randint(0, 5)))


def _pattern(rng: random.Random) -> str:
    return "".join(rng.choice(["a", "b", "*", "?", "[ab]", "[!c]", ".", "x", "[", "]", "\\"])
                   for _ in range(rng.randint(1, 6)))


def _url(rng: random.Random) -> str:
    host = rng.choice(["example.com", "a.b.org:8080", "[::1]", "user:pw@host.net", ""])
    path = "/".join(rng.choice(["", "docs", "..", ".", "a b", "x%20y", "index.html"])
                    for _ in range(rng.randint(0, 3)))
    query = rng.choice(["", "?q=1", "?a=1&b=two", "?x=%C3%A9&y"])
    return (rng.choice(["http://", "https://", "ftp://", "", "//"]) + host + "/" + path + query
            + rng.choice(["", "#top", "#a%20b"]))


def _pct(rng: random.Random) -> str:
    return "".join(rng.choice(["a", "%20", "%2F", "+", "é", "%C3%A9", "~", " ", "%zz", "/", "&"])
                   for _ in range(rng.randint(0, 7)))


def _qs(rng: random.Random) -> str:
    return "&".join(f"{rng.choice(['a', 'b', 'key', 'x+y'])}={rng.choice(['1', '', 'two', 'a%20b'])}"
                    for _ in range(rng.randint(0, 4)))


def _addr(rng: random.Random) -> str:
    return rng.choice(["Ann Lee <ann@example.com>", '"Doe, J" <j@x.org>', "bob@host",
                       "<only@angle.net>", "Name (comment) <n@x.io>", "broken <", ""]) \
        + rng.choice(["", " ", ", c@d.e"])


def _winpath(rng: random.Random) -> str:
    parts = [rng.choice(["Users", "a", "..", ".", "b.txt", "dir.d", "", "x.tar.gz"])
             for _ in range(rng.randint(1, 4))]
    return rng.choice(["C:\\", "c:", "\\\\server\\share\\", "", "\\"]) + \
        rng.choice(["\\", "/"]).join(parts)


def _abspaths(rng: random.Random) -> tuple:
    base = "/" + "/".join(rng.choice(["usr", "lib", "a", "b"]) for _ in range(rng.randint(0, 2)))
    return ([base + "/" + "/".join(rng.choice(["x", "y", "lib", "a"])
                                   for _ in range(rng.randint(0, 3)))
             for _ in range(rng.randint(1, 3))],)


def _year(rng: random.Random) -> int:
    return rng.choice([rng.randint(1582, 2400), rng.choice([1900, 2000, 2100, 2024, 1600])])


TARGETS: dict[str, dict[str, Inputs]] = {
    "statistics": {
        **{n: (lambda rng: (_nums(rng),)) for n in
           ("mean", "fmean", "median", "median_low", "median_high", "median_grouped",
            "pvariance", "pstdev", "multimode")},
        "mode": lambda rng: (_ints(rng, 1, 9, 0, 4),),
        "variance": lambda rng: (_nums(rng, 2),), "stdev": lambda rng: (_nums(rng, 2),),
        "quantiles": lambda rng: (_nums(rng, 2),),
        "geometric_mean": _pos, "harmonic_mean": _pos,
        "covariance": _pair, "correlation": _pair, "linear_regression": _pair,
    },
    "colorsys": {n: _rgb for n in ("rgb_to_yiq", "yiq_to_rgb", "rgb_to_hls", "hls_to_rgb",
                                   "rgb_to_hsv", "hsv_to_rgb")},
    "bisect": {n: _sorted_x for n in ("bisect_left", "bisect_right", "insort_left",
                                      "insort_right")},
    "heapq": {"heappush": _heap_x, "heappushpop": _heap_x, "heapreplace": _heap_x,
              "heappop": lambda rng: (sorted(_ints(rng, 1, 8, 0, 20)),),
              "heapify": lambda rng: (_ints(rng, 0, 9, 0, 20),),
              "nlargest": lambda rng: (rng.randint(0, 5), _ints(rng, 0, 8, 0, 20)),
              "nsmallest": lambda rng: (rng.randint(0, 5), _ints(rng, 0, 8, 0, 20)),
              "merge": lambda rng: (sorted(_ints(rng, 0, 5, 0, 9)),
                                    sorted(_ints(rng, 0, 5, 0, 9)))},
    "textwrap": {"dedent": lambda rng: (_text(rng),),
                 "indent": lambda rng: (_text(rng), rng.choice(["> ", "  ", "# ", "\t"]))},
    "string": {"capwords": lambda rng: (_words(rng),)},
    "posixpath": {**{n: (lambda rng: (_path(rng),)) for n in
                     ("normpath", "basename", "dirname", "split", "splitext", "isabs")},
                  "join": lambda rng: (_path(rng), _path(rng)), "commonpath": _abspaths,
                  "relpath": lambda rng: ("/" + _path(rng).lstrip("/"),
                                          "/" + _path(rng).lstrip("/"))},
    "fnmatch": {"translate": lambda rng: (_pattern(rng),)},
    "shlex": {"quote": lambda rng: (_words(rng),),
              "join": lambda rng: ([rng.choice(_WORDS) for _ in range(rng.randint(0, 4))],)},
    "glob": {"has_magic": lambda rng: (_pattern(rng),), "escape": lambda rng: (_pattern(rng),)},
    "urllib.parse": {"urljoin": lambda rng: (_url(rng), rng.choice([_url(rng), "../x", "?q=2",
                                                                    "#f", "g/h", "/abs"])),
                     "urldefrag": lambda rng: (_url(rng),), "urlsplit": lambda rng: (_url(rng),),
                     **{n: (lambda rng: (_pct(rng),)) for n in
                        ("unquote", "quote", "quote_plus", "unquote_plus")},
                     "parse_qsl": lambda rng: (_qs(rng),), "parse_qs": lambda rng: (_qs(rng),)},
    "email.utils": {"parseaddr": lambda rng: (_addr(rng),),
                    "formataddr": lambda rng: ((rng.choice(["Ann", "Doe, J", "", "Zoë"]),
                                                rng.choice(["a@b.c", "x@y"])),),
                    "unquote": lambda rng: (rng.choice(['"a b"', "<x@y>", '"q\\"x"', "plain",
                                                        '"', ""]),)},
    "html": {"escape": lambda rng: ("".join(rng.choice(["a", "<", ">", "&", "'", '"', " b"])
                                            for _ in range(rng.randint(0, 8))),
                                    rng.random() < 0.5),
             "unescape": lambda rng: ("".join(rng.choice(["&amp;", "&lt;", "&#62;", "&#x41;",
                                                          "a", "&bogus;", "&", " ", "&eacute;"])
                                              for _ in range(rng.randint(0, 6))),)},
    "quopri": {"needsquoting": lambda rng: (bytes([rng.randrange(256)]), rng.random() < 0.5,
                                            rng.random() < 0.5),
               "ishex": lambda rng: (bytes([rng.randrange(40, 110)]),),
               "unhex": lambda rng: (rng.choice([b"41", b"ff", b"0a", b"7F", b"00", b"a"]),)},
    "calendar": {"isleap": lambda rng: (_year(rng),),
                 "leapdays": lambda rng: tuple(sorted([_year(rng), _year(rng)])),
                 "monthrange": lambda rng: (_year(rng), rng.randint(1, 12)),
                 "weekday": lambda rng: (_year(rng), rng.randint(1, 12), rng.randint(1, 28)),
                 **{n: (lambda rng: (_year(rng), rng.randint(1, 12))) for n in
                    ("_monthlen", "_prevmonth", "_nextmonth")},
                 "timegm": lambda rng: ((_year(rng), rng.randint(1, 12), rng.randint(1, 28),
                                         rng.randint(0, 23), rng.randint(0, 59), 0),)},
    "ntpath": {n: (lambda rng: (_winpath(rng),)) for n in
               ("split", "splitext", "basename", "dirname", "splitdrive", "isabs")}
    | {"join": lambda rng: (_winpath(rng), _winpath(rng))},
    "genericpath": {"commonprefix": _abspaths},
    "ipaddress": {"_count_righthand_zero_bits": lambda rng: (rng.choice(
        [0, 1, 8, 12, 1024, rng.randrange(1 << 32)]), rng.choice([8, 16, 32])),
                  "v4_int_to_packed": lambda rng: (rng.randrange(1 << 32),)},
    "http.cookies": {"_quote": lambda rng: (_words(rng),),
                     "_unquote": lambda rng: (rng.choice(['"a\\"b"', '"x\\054y"', "plain",
                                                          '"\\\\"', '""']),)},
}
"""module -> function -> generator of valid positional arguments."""
TARGETS.update(MORE_TARGETS)  # parsers and encoders of ftplib, getopt, tarfile, ...

RUNNER = '''
def _outcome(fn, args):
    """(repr of the result or 'raises <Exception>', repr of the arguments after the call)."""
    try:
        out = fn(*args)
        if hasattr(out, "__next__"):
            out = list(out)
        return repr(out), repr(args)
    except Exception as e:
        return "raises " + type(e).__name__, repr(args)
'''
"""How a call is observed, on the host (differential search) and in the hidden tests."""
_NS: dict[str, Any] = {}
exec(RUNNER, _NS)  # noqa: S102 - our own constant above
_outcome: Callable[[Callable, tuple], tuple[str, str]] = _NS["_outcome"]


@dataclass(frozen=True)
class Function:
    """One standard-library function: its source (unparsed AST) and the names it imports."""

    module: str
    name: str
    source: str
    imports: tuple[str, ...]
    """Module globals the body uses (imported from the real module in the task's file)."""
    node: ast.FunctionDef
    inputs: Inputs


def _free_names(node: ast.FunctionDef) -> set[str]:
    loads = {n.id for n in ast.walk(node)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stores = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
              and isinstance(n.ctx, (ast.Store, ast.Del))}
    args = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
    return loads - stores - args - set(dir(builtins))


@functools.lru_cache(maxsize=None)
def _module_defs(module: str) -> dict[str, ast.FunctionDef]:
    mod = importlib.import_module(module)
    tree = ast.parse(inspect.getsource(mod))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


@functools.lru_cache(maxsize=None)
def function(module: str, name: str) -> Function | None:
    """The function `module.name` from the module's source, or None if it cannot stand alone
    (a global it needs is not importable from the module at run time)."""
    node = _module_defs(module).get(name)
    if node is None:
        return None
    mod = importlib.import_module(module)
    names = sorted(n for n in _free_names(node) if n != name)
    if any(not hasattr(mod, n) for n in names):
        return None
    return Function(module, name, ast.unparse(node), tuple(names), node, TARGETS[module][name])


def header(module: str, functions: list[Function]) -> str:
    """The import lines a file holding `functions` needs (their own names excluded)."""
    own = {f.name for f in functions}
    names = sorted({n for f in functions for n in f.imports} - own)
    lines = [f'"""Selected functions of the standard library\'s `{module}` module."""', ""]
    if names:
        lines.append(f"from {module} import {', '.join(names)}")
    return "\n".join(lines) + "\n"


def load(source: str, name: str, module: str, imports: tuple[str, ...]) -> Callable:
    """Compile `source` (one function) against the real module's globals; return it."""
    ns: dict[str, Any] = {"__name__": f"swe_{module}"}
    mod = importlib.import_module(module)
    ns.update({n: getattr(mod, n) for n in imports})
    exec(compile(source, f"<{module}.{name}>", "exec"), ns)  # noqa: S102 - our own mutants
    return ns[name]


class _OutOfBudget(BaseException):
    """Not an Exception: `_outcome` must not report it as the function raising."""


def bounded(fn: Callable, args: tuple, max_lines: int = 20_000) -> tuple[str, str]:
    """`_outcome(fn, deepcopy(args))`, stopped after `max_lines` traced lines (20k: ~200x what
    any original needs on these inputs; a mutated loop bound can spin forever)."""
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            count[0] += 1
            if count[0] > max_lines:
                raise _OutOfBudget
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        return _outcome(fn, copy.deepcopy(args))
    except _OutOfBudget:
        return "does not terminate", repr(args)
    finally:
        sys.settrace(old)


# ---------------------------------------------------------------------------------------------
# mutations

_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
        ast.NotIn: ast.In}
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
        ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}
_SYM = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
        ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
        ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class Bug:
    """An injected bug that really changes behaviour."""

    source: str
    """The faulty function's source."""
    kind: str
    """comparison_flip, off_by_one, wrong_operator, bool_operator, dropped_not, dropped_branch."""
    what: str
    """The change in words, as a reviewer would state the fix."""
    line: str
    """The faulty line of `source`."""
    witness: tuple
    """An input on which the faulty and original functions differ."""
    want: tuple[str, str]
    got: tuple[str, str]
    differing: tuple[tuple, ...] = ()
    """Every probed input on which the two differ (the witness first), for the hidden tests:
    a patch that special-cases the witness alone fails the others."""


def _sites(node: ast.FunctionDef) -> list[tuple[ast.AST, str]]:
    """Every (node, mutation kind) the function offers (docstring constants excluded)."""
    body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                             and isinstance(node.body[0].value, ast.Constant)) else node.body
    out = []
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Compare) and type(n.ops[0]) in _CMP:
                out.append((n, "comparison_flip"))
            elif isinstance(n, ast.BinOp) and type(n.op) in _BIN:
                out.append((n, "wrong_operator"))
            elif (isinstance(n, ast.Constant) and type(n.value) is int
                  and not isinstance(n.value, bool) and abs(n.value) < 1000):
                out.append((n, "off_by_one"))
            elif isinstance(n, ast.BoolOp):
                out.append((n, "bool_operator"))
            elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
                out.append((n, "dropped_not"))
            elif isinstance(n, ast.If):
                out.append((n, "dropped_branch"))
    return out


def _mutate(fn: Function, k: int, rng: random.Random) -> tuple[str, str, str] | None:
    """Apply mutation site `k` to a copy of the function: (source, kind, what) or None."""
    tree = copy.deepcopy(fn.node)
    site, kind = _sites(tree)[k]
    before = ast.unparse(site) if not isinstance(site, ast.If) else ast.unparse(site.test)
    if kind == "comparison_flip":
        old = type(site.ops[0])
        site.ops[0] = _CMP[old]()
        what = f"the comparison `{_SYM[old]}` in `{before}` was changed to `{_SYM[_CMP[old]]}`"
    elif kind == "wrong_operator":
        old = type(site.op)
        site.op = _BIN[old]()
        what = f"the operator `{_SYM[old]}` in `{before}` was changed to `{_SYM[_BIN[old]]}`"
    elif kind == "off_by_one":
        delta = rng.choice([1, -1])
        site.value += delta
        what = f"the constant `{site.value - delta}` was changed to `{site.value}`"
    elif kind == "bool_operator":
        old = type(site.op)
        site.op = ast.Or() if old is ast.And else ast.And()
        what = f"`{_SYM[old]}` in `{before}` was changed to `{_SYM[type(site.op)]}`"
    elif kind == "dropped_not":
        parent = next(p for p in ast.walk(tree) for f, v in ast.iter_fields(p)
                      if v is site or (isinstance(v, list) and any(x is site for x in v)))
        for f, v in ast.iter_fields(parent):
            if v is site:
                setattr(parent, f, site.operand)
            elif isinstance(v, list):
                v[:] = [site.operand if x is site else x for x in v]
        what = f"the `not` in `{before}` was dropped"
    else:  # dropped_branch: the `if` body is replaced by its `else` (or nothing)
        site.body = site.orelse or [ast.Pass()]
        site.orelse = []
        what = f"the branch under `if {before}:` was dropped"
    ast.fix_missing_locations(tree)
    try:
        source = ast.unparse(tree)
        compile(source, "<mutant>", "exec")
    except (SyntaxError, ValueError):
        return None
    return source, kind, what


def changed_lines(original: str, mutant: str) -> tuple[str, str]:
    """(original line, faulty line) of the first line that differs; a dropped branch shifts
    the rest, so the faulty side may be the line that now follows."""
    for a, b in zip(original.splitlines(), mutant.splitlines()):
        if a != b:
            return a, b
    return original.splitlines()[-1], mutant.splitlines()[-1]


def cases(fn: Function, rng: random.Random, n: int) -> list[tuple]:
    """`n` distinct valid inputs (repr-distinct) for `fn`."""
    out, seen = [], set()
    for _ in range(n * 5):
        args = fn.inputs(rng)
        if repr(args) not in seen:
            seen.add(repr(args))
            out.append(args)
        if len(out) == n:
            break
    return out


def inject_bug(fn: Function, rng: random.Random, probes: int = 40, tries: int = 16) -> Bug | None:
    """A mutant of `fn` that differs from it on some generated input (None if none found)."""
    original = load(fn.source, fn.name, fn.module, fn.imports)
    inputs = cases(fn, rng, probes)
    want = [bounded(original, a) for a in inputs]
    sites = list(range(len(_sites(fn.node))))
    rng.shuffle(sites)
    for k in sites[:tries]:
        made = _mutate(fn, k, rng)
        if made is None:
            continue
        source, kind, what = made
        try:
            mutant = load(source, fn.name, fn.module, fn.imports)
        except Exception:  # noqa: BLE001 - a mutant that fails at definition time
            continue
        diff = []
        for args, w in zip(inputs, want):
            if w[0] == "does not terminate":
                continue
            got = bounded(mutant, args)
            if got != w and got[0] != "does not terminate":
                diff.append((args, w, got))
        if diff:
            (args, w, got), line = diff[0], changed_lines(fn.source, source)[1].strip()
            return Bug(source, kind, what, line, args, w, got, tuple(d[0] for d in diff[:6]))
    return None


def module_functions(module: str) -> list[Function]:
    """The usable functions of `module` (standalone, with an input generator), by name."""
    return [f for name in sorted(TARGETS[module]) if (f := function(module, name)) is not None]
