"""A real document collection every install of this package has: the API docs of the Python
standard library and of the installed packages `youtu` depends on.

    corpus = build_corpus()                    # cached per process, ~13,000 documents
    corpus.docs["json.JSONDecoder"]            # title line, signature, bases, methods, docstring
    corpus.classes["json.JSONDecoder"].bases   # facts, read by introspection

One document per public module, class, function and method of ~190 standard-library modules
(`STDLIB`) and ~70 modules of installed packages (`PACKAGES`: sympy, numpy, pyarrow, jinja2,
httpx, pydantic, click, ...: `youtu`'s dependencies and theirs, so any machine that runs it has
them), written from `inspect` (signature, parameters, defining module, bases, the methods a class
defines) plus the first 400 characters of the docstring. The facts questions are built from
(parameter defaults and counts, first parameters, base classes, methods defined, defining
modules) are read from the same objects, so every answer is in a document and checkable without
a model. A module that does not import here is skipped. The collection depends on the installed
Python and package versions; within one install it is deterministic. With the stdlib alone it
held 3,954 documents, and 11k questions drawn from it were 13% near-duplicates (the same start
object, hence the same documents): more documents, not fewer words per document, is the fix.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import re
import warnings
from dataclasses import dataclass, field

from youtu.agentic.envs.research import BM25

logger = logging.getLogger(__name__)

STDLIB = (
    "abc argparse ast base64 bisect bz2 calendar cmath codecs collections colorsys "
    "configparser contextlib copy csv dataclasses datetime decimal difflib dis email.message "
    "email.utils enum filecmp fileinput fnmatch fractions ftplib functools gettext glob graphlib "
    "gzip hashlib heapq hmac html html.parser http.client http.cookies imaplib inspect io "
    "ipaddress itertools json json.decoder json.encoder locale logging logging.handlers lzma "
    "mailbox math mimetypes numbers operator optparse os pathlib pickle platform plistlib "
    "poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex shutil "
    "smtplib socket sqlite3 statistics string struct subprocess tarfile tempfile textwrap "
    "threading timeit tokenize traceback types typing unittest urllib.parse urllib.request "
    "uuid warnings wave weakref xml.dom.minidom xml.etree.ElementTree zipfile zoneinfo "
    "asyncio concurrent.futures multiprocessing email.parser email.headerregistry email.policy "
    "email.mime.text email.charset email.header xml.sax xml.sax.saxutils xml.dom "
    "urllib.robotparser urllib.error importlib importlib.metadata importlib.resources "
    "unittest.mock http.server http.cookiejar socketserver wsgiref.simple_server wsgiref.headers "
    "wsgiref.util xmlrpc.client xmlrpc.server ctypes array binascii code codeop cmd compileall "
    "contextvars copyreg doctest errno faulthandler getopt getpass keyword linecache mmap "
    "modulefinder netrc pdb pkgutil pstats profile cProfile py_compile pyclbr pydoc runpy select "
    "signal stat stringprep symtable sysconfig tabnanny token tomllib trace tracemalloc "
    "unicodedata zipapp zipimport zlib collections.abc logging.config multiprocessing.pool "
    "html.entities http os.path posixpath dbm gc atexit builtins sys time marshal"
).split()
"""Standard-library modules, imported for their documentation; none has import-time side
effects beyond definitions (not `this`, `antigravity`, `turtle`)."""
PACKAGES = (
    "sympy sympy.core.expr sympy.core.basic sympy.core.function sympy.core.numbers "
    "sympy.polys.polytools sympy.polys.rings sympy.polys.domains sympy.matrices.dense "
    "sympy.matrices.matrixbase sympy.sets.sets sympy.logic.boolalg sympy.ntheory "
    "sympy.combinatorics sympy.combinatorics.permutations sympy.geometry sympy.tensor "
    "sympy.series sympy.solvers sympy.integrals sympy.simplify sympy.printing "
    "sympy.utilities.iterables sympy.discrete sympy.codegen.ast sympy.crypto.crypto sympy.vector "
    "sympy.stats sympy.physics.units sympy.functions.combinatorial.numbers "
    "sympy.functions.elementary.trigonometric sympy.functions.special.gamma_functions "
    "sympy.assumptions numpy numpy.linalg numpy.fft numpy.random numpy.ma "
    "numpy.polynomial.polynomial numpy.lib.recfunctions numpy.testing numpy.char numpy.strings "
    "jinja2 jinja2.ext jinja2.nodes jinja2.filters jinja2.utils httpx markdown_it "
    "markdown_it.rules_inline markdown_it.common.utils tqdm pyarrow pyarrow.compute pyarrow.fs "
    "pyarrow.parquet pyarrow.csv pyarrow.json zstandard safetensors tokenizers orjson tomli_w "
    "fastapi fastapi.params starlette.requests starlette.responses pydantic pydantic.fields "
    "uvicorn.config click"
).split()
"""Modules of installed packages: `youtu`'s core dependencies (sympy, numpy, pyarrow, jinja2,
httpx, markdown-it, tqdm, ...) and theirs (starlette, pydantic, click), so every install has
them; light imports only (not torch or transformers: seconds and ~1 GB per worker)."""
MODULES = STDLIB + PACKAGES
_DOC_CHARS = 400
_SIMPLE = (int, float, str, bool, type(None))


@dataclass
class ClassFacts:
    qualname: str
    module: str
    bases: list[str]
    """Qualified names of the direct bases that are themselves documents."""
    methods: list[str]
    """Public methods the class itself defines, sorted."""
    init_defaults: dict[str, str]
    """Constructor parameter -> repr of its default (simple values only)."""


@dataclass
class FunctionFacts:
    qualname: str
    module: str
    params: list[str]
    required: int
    defaults: dict[str, str]


@dataclass
class Corpus:
    docs: dict[str, str] = field(default_factory=dict)
    classes: dict[str, ClassFacts] = field(default_factory=dict)
    functions: dict[str, FunctionFacts] = field(default_factory=dict)
    modules: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    """Module -> (document ids of the functions, of the classes) its document lists, in order."""
    index: BM25 | None = None


def _signature(obj: object) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _defaults(sig: inspect.Signature | None) -> dict[str, str]:
    if sig is None:
        return {}
    # (no braces: an answer is given in \\boxed{}, and jinja2's '{%' cannot be)
    return {p.name: repr(p.default) for p in sig.parameters.values()
            if p.default is not inspect.Parameter.empty and type(p.default) in _SIMPLE
            and len(repr(p.default)) < 40 and not {"{", "}"} & set(repr(p.default))}


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
"""A default's repr may hold its memory address (`<object object at 0x7f26e0ba4160>`, ~140
signatures): different in every process, so the documents (and the episodes reading them)
would not repeat across runs."""


def _shown(sig: inspect.Signature) -> str:
    return _ADDRESS.sub("", str(sig))


def _doc(obj: object) -> str:
    text = inspect.getdoc(obj) or ""
    return " ".join(text.split())[:_DOC_CHARS]


def _listing(names: list[str], most: int = 12) -> str:
    """The first `most` names (a module such as os lists 150; every episode opening it would
    share that text: 7.5% near-duplicate episodes with full listings)."""
    if not names:
        return "none"
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _add_function(c: Corpus, qual: str, obj: object, kind: str, owner: str) -> None:
    sig = _signature(obj)
    if sig is None:
        return
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = sum(p.default is p.empty for p in params)
    c.functions[qual] = FunctionFacts(qual, owner, [p.name for p in params], required,
                                     _defaults(sig))
    names = [p.name for p in params]
    c.docs[qual] = (f"{qual}{_shown(sig)}\n{kind} of {owner}. Parameters ({len(names)}): "
                    f"{', '.join(names) or 'none'}. Required parameters: {required}. "
                    f"{_doc(obj)}")


def _add_class(c: Corpus, qual: str, cls: type, seen: set[str]) -> None:
    methods = sorted(n for n, v in vars(cls).items() if not n.startswith("_")
                     and (inspect.isfunction(v) or inspect.ismethoddescriptor(v)
                          or isinstance(v, (classmethod, staticmethod))))
    init_sig = _signature(cls)
    # a C accelerator may carry its Python subclass's name (zoneinfo.ZoneInfo): no self-loops
    bases = [_name(b) for b in cls.__bases__ if _name(b) != qual]
    c.classes[qual] = ClassFacts(qual, cls.__module__, bases, methods, _defaults(init_sig))
    sig = _shown(init_sig) if init_sig is not None else "(...)"
    c.docs[qual] = (f"{qual}\nclass {cls.__qualname__}{sig}, defined in module {cls.__module__}."
                    f" Bases: {', '.join(bases) or 'none'}. Methods defined here ({len(methods)}): "
                    f"{', '.join(methods) or 'none'}. {_doc(cls)}")
    for name in methods:
        _add_function(c, f"{qual}.{name}", getattr(cls, name), "Method", f"class {qual}")
    for base in cls.__bases__:  # bases from other modules (builtins) are documents too
        if _name(base) not in seen and _name(base) != qual:
            seen.add(_name(base))
            _add_class(c, _name(base), base, seen)


@functools.lru_cache(maxsize=1)
def build_corpus() -> Corpus:
    """The collection and its BM25 index (built once per process, ~1.7 s with the imports)."""
    c = Corpus()
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules (optparse, ...) still document
        for modname in MODULES:
            try:
                mod = importlib.import_module(modname)
            except ImportError:  # a Python built without it (lzma, sqlite3 on minimal images)
                logger.info("pydocs: %s is not importable here; skipped", modname)
                continue
            public = sorted(n for n in getattr(mod, "__all__", dir(mod)) if not n.startswith("_")
                            and hasattr(mod, n))
            members = [(n, getattr(mod, n)) for n in public]
            funcs = [n for n, v in members if inspect.isfunction(v) or inspect.isbuiltin(v)]
            classes = [n for n, v in members if inspect.isclass(v)]
            c.docs[modname] = (f"{modname}\nModule {modname}. Functions ({len(funcs)}): "
                               f"{_listing(funcs)}. Classes ({len(classes)}): "
                               f"{_listing(classes)}. {_doc(mod)}")
            for n, v in members:
                qual = f"{modname}.{n}"
                if inspect.isclass(v) and _name(v) not in seen:
                    seen.add(_name(v))
                    _add_class(c, _name(v), v, seen)
                elif (inspect.isfunction(v) or inspect.isbuiltin(v)) and qual not in c.docs:
                    _add_function(c, qual, v, "Function", f"module {modname}")
            c.modules[modname] = ([f"{modname}.{n}" for n in funcs],
                                  [_name(getattr(mod, n)) for n in classes])
    c.index = BM25(c.docs)
    return c
