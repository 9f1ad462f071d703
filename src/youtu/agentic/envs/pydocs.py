"""Deep research over a real corpus: multi-hop questions about the installed Python standard
library and packages, answered by searching and reading their API documentation.

    env = PyDocsEnv()
    task = env.generate(seed=4, difficulty=3)   # a 3-hop question: class -> base -> base -> fact
    env.call_tool(task, None, "search", {"query": "JSONDecoder raw_decode"})
    env.call_tool(task, None, "open", {"doc_id": "json.decoder.JSONDecoder"})

The collection is `pydocs_corpus.build_corpus()` (~13,000 documents written from `inspect`),
with the same BM25 `search` and `open` tools as the research environment. A question at
difficulty h needs h documents: one hop names an API object and asks a fact its document states
(a parameter default, the number of parameters or of required ones, the first parameter, the
methods a class defines, the module defining it, its base class, how many functions or classes
a module lists); each further
hop follows a link the current document states: a base class, the defining module, a class's
first method, a method's class, a module's first function or class ("the first class listed
in the module that defines the base class of `http.client.HTTPException`"). Answers are the
introspected values, checked exactly after normalisation. Seed s starts at the (s mod N)-th
object of a fixed shuffle of the N ~13,000 start objects, so a run of fewer than N tasks asks
from each start at one difficulty at most (drawn at random, 11k tasks over ~4,000 objects gave
13% near-duplicates: the same documents read again).
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs.base import Env, function_schema, normalize_text
from youtu.agentic.envs.pydocs_corpus import Corpus, build_corpus
from youtu.agentic.trajectory import Step, Task, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

_UP = ["the base class of {}", "the class that {} directly inherits from",
       "the parent class of {}", "the first base of {}"]
_ASK = {
    "default": ["What is the default value of the parameter `{p}` of {x}?",
                "If the `{p}` argument of {x} is left out, which value does it take?",
                "{X} has a parameter `{p}`. What is its default?",
                "What does `{p}` default to in {x}?"],
    "params": ["How many parameters does {x} take in all (self and *args/**kwargs excluded)?",
               "Counting every named parameter (not self, not *args or **kwargs), how many "
               "does {x} have?", "What is the total number of named parameters of {x}?"],
    "first_param": ["What is the name of the first parameter of {x} (self excluded)?",
                    "Which parameter comes first in the signature of {x}, not counting self?",
                    "Name the first parameter {x} takes (after self, if any)."],
    "required": ["How many required parameters does {x} take (self excluded)?",
                 "Counting only parameters without a default (and not self), how many does {x} "
                 "need?", "How many arguments must a caller of {x} pass at least (self excluded)?",
                 "What is the number of required parameters of {x}?"],
    "methods": ["How many public methods does {x} define itself (inherited ones excluded)?",
                "Not counting inherited ones, how many public methods are defined by {x}?",
                "How many methods without a leading underscore does {x} itself define?"],
    "module": ["In which module is {x} defined?", "Which module defines {x}?",
               "Name the module where {x} is defined.", "{X} lives in which module?"],
    "functions": ["How many functions does the documentation of {x} list?",
                  "Count the functions listed for {x}.", "How many functions does {x} list?"],
    "classes": ["How many classes does the documentation of {x} list?",
                "Count the classes listed for {x}.", "How many classes does {x} list?"],
    "base": ["What is the fully qualified name of the first base class of {x}?",
             "{X} inherits from one class first. Give that class's fully qualified name.",
             "Which class (fully qualified) is listed first among the bases of {x}?"],
}
_LEADS = ["", "", "Python question: ", "Check the docs: ", "API question: ",
          "From the API documentation: ", "Look it up: "]
_DOCS_OF = {"default": "signature", "required": "required-parameter count",
            "params": "parameter count", "first_param": "first parameter",
            "methods": "method list",
            "module": "defining module", "base": "bases", "functions": "function list",
            "classes": "class list"}


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


class PyDocsEnv(Env):
    """Multi-hop questions over the standard library's API documentation (search + open)."""

    name = "pydocs"
    version = "2"
    system_prompt = ("You are a research agent with the API documentation of the Python "
                     "standard library and installed packages. Search it, open documents to "
                     "read them, follow each link the question needs, and give the final "
                     "answer in \\boxed{}.")
    max_difficulty = 4

    @property
    def tools(self) -> list[dict[str, Any]]:
        return [function_schema("search", "BM25 search over the documentation; returns the "
                                "top results as 'doc_id | title | snippet'.",
                                {"query": {"type": "string"}}),
                function_schema("open", "Open a document by id (a fully qualified name) and "
                                "read it.", {"doc_id": {"type": "string"}})]

    @property
    def corpus(self) -> Corpus:
        return build_corpus()

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        hops = self._difficulty(difficulty)
        c = self.corpus
        rng = random.Random(f"pydocs/{seed}/{difficulty}")
        order, k = _starts(), seed % len(_starts())
        # a start with no such chain (18% of them have no 4-hop one) hands over to the next
        # object of the order: that is seed + 1's start, but at another difficulty
        while (made := _walk(c, rng, hops, order[k])) is None:
            k = (k + 1) % len(order)
        path, rels, fact, param, answer = made
        desc = f"`{path[0]}`"
        for rel in rels:
            desc = rng.choice(_LINK[rel]).format(desc)
        question = rng.choice(_LEADS) + rng.choice(_ASK[fact]).format(x=desc, X=_cap(desc),
                                                                      p=param)
        steps = [Step(f"Search for {path[0]}", "search", {"query": path[0]},
                      self._search(path[0]))]
        # later hops by their link, not their id: the id is read from the previous document
        steps += [Step(f"Open the document of {path[0]}" if k == 0 else
                       f"Open the document the '{rels[k - 1]}' link of the previous one names",
                       "open", {"doc_id": q}, c.docs[q]) for k, q in enumerate(path)]
        task = Task(id=f"pydocs-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, prompt=question, answer=answer, steps=steps,
                    meta={"path": path, "relations": rels, "fact": fact, "param": param,
                          "hops": hops,
                          "plan": [f"Find the document of {path[0]}"]
                          + [f"Follow the link to {q}" for q in path[1:]]
                          + [f"Read the {_DOCS_OF[fact]}"]})
        task.near_misses = _near(c, fact, answer, rng, path[-1])
        return task

    def _search(self, query: str) -> str:
        hits = self.corpus.index.search(query, k=5)
        if not hits:
            return "no results"
        return "\n".join(f"{d} | {self.corpus.docs[d].split(chr(10), 1)[0]} | "
                         f"{self.corpus.docs[d].split(chr(10), 1)[1][:80]}" for d, _ in hits)

    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        if name == "search":
            query = arguments.get("query")
            if not isinstance(query, str) or not query.strip():
                return "error: 'query' must be a non-empty string"
            return self._search(query)
        if name == "open":
            doc_id = arguments.get("doc_id")
            if doc_id not in self.corpus.docs:
                return (f"error: no document {doc_id!r}; ids are fully qualified names such as "
                        "'json.decoder.JSONDecoder' (search to find one)")
            return self.corpus.docs[doc_id]
        return f"error: unknown tool {name!r}; available: search, open"

    def check(self, task: Task, answer: str) -> Verdict:
        ok = normalize_text(answer) == normalize_text(task.answer)
        return Verdict(ok, float(ok), f"{answer!r} {'==' if ok else '!='} {task.answer!r}",
                       "pydocs/introspection")

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        m, c = task.meta, self.corpus
        path = m["path"]
        b.think("analysis", rng.choice([
            f"Question: {task.prompt} It starts at {path[0]} and needs {len(path)} document(s).",
            f"I need the {_DOCS_OF[m['fact']]} of an object reached from `{path[0]}`"
            + (f" through {len(path) - 1} link(s)." if len(path) > 1 else "."),
            f"{task.prompt} The documents are named by qualified names, so each hop is an "
            "open."]))
        b.think("plan", "\n".join(f"{i + 1}. {p}" for i, p in enumerate(m["plan"])))
        slip = rng.choice(["wrong_argument", "premature_answer"]) if mistake else ""
        if slip == "wrong_argument":
            short = path[0].rsplit(".", 1)[-1]
            b.think("action", f"Open {short}.", mistake=True)
            obs = b.call("open", {"doc_id": short}, mistake=True)
            b.mistake("wrong_argument", note=f"opened {short!r}, not a qualified id")
            b.think("reflection", f"{obs.split(';')[0]}. The id must be the qualified name "
                    f"{path[0]}.")
        if rng.random() < 0.6:
            b.think("action", f"Search the documentation for {path[0]}.")
            hits = b.call("search", {"query": path[0]})
            found = path[0] in [line.split(" | ")[0] for line in hits.splitlines()]
            b.think("reflection", f"{path[0]} is {'among' if found else 'not in'} the results"
                    + ("" if found else "; its id is its qualified name, so open it directly")
                    + ".")
        premature = None
        for k, q in enumerate(path):
            b.think("action", rng.choice([f"Open {q}.", f"Read the document of {q}."]))
            doc = b.call("open", {"doc_id": q})
            if premature is not None:  # the turn holding the premature answer is closed now
                early, prev = premature
                b.mistake("premature_answer", answer=early, note=f"answered for {prev}, one "
                          "hop short")
                b.think("reflection", f"{early} was the {_DOCS_OF[m['fact']]} of {prev}, not "
                        f"of {q}: that answer was premature.")
                premature = None
            if k + 1 < len(path):
                nxt = path[k + 1]
                line = next((s for s in doc.split(". ") if nxt.rsplit(".", 1)[-1] in s), nxt)
                b.think("reflection", f"It says: {line.strip()[:160]}. Next: {nxt}.")
                if slip == "premature_answer" and k == 0:
                    early = _fact(c, q, m["fact"], m["param"])
                    if early is not None and normalize_text(early) != normalize_text(task.answer):
                        b.think("summary", f"So the answer is {early}.", mistake=True)
                        premature = (early, q)
            else:
                b.think("reflection", f"The {_DOCS_OF[m['fact']]} of {q}: {task.answer}.")
        b.think("summary", " -> ".join(path) + f"; answer: {task.answer}.")
        return f"\\boxed{{{task.answer}}}"


def _fact(c: Corpus, q: str, fact: str, param: str) -> str | None:
    """The value of `fact` for object `q`, or None if it has none."""
    if fact in ("functions", "classes"):
        return str(len(c.modules[q][fact == "classes"])) if q in c.modules else None
    if fact in ("params", "first_param"):
        f = c.functions.get(q)
        if f is None or not f.params:
            return None
        return str(len(f.params)) if fact == "params" else f.params[0]
    if fact in ("default", "required"):
        f = c.functions.get(q)
        cls = c.classes.get(q)
        if fact == "default":
            d = f.defaults if f else (cls.init_defaults if cls else {})
            return d.get(param)
        return str(f.required) if f else None
    cls = c.classes.get(q)
    if cls is None:
        f = c.functions.get(q)
        return f.module.split(" ", 1)[1] if (f and fact == "module") else None
    if fact == "methods":
        return str(len(cls.methods))
    if fact == "module":
        return cls.module
    return cls.bases[0] if (fact == "base" and cls.bases) else None


_LINK = {  # relation -> how a question names the object it leads to
    "base": _UP,
    "module": ["the module that defines {}", "the module {} belongs to"],
    "method": ["the first method listed for {}", "the alphabetically first public method of {}"],
    "owner": ["the class that defines {}", "the class {} belongs to"],
    "first_function": ["the first function listed in {}", "the first function of {}"],
    "first_class": ["the first class listed in {}", "the first class of {}"],
}


_WEIGHT = {"base": 3, "method": 3, "owner": 3, "first_function": 2, "first_class": 1,
           "module": 1}


def _links(c: Corpus, q: str) -> list[tuple[str, str]]:
    """(relation, document id) links the document `q` states."""
    out = []
    if q in c.classes:
        cls = c.classes[q]
        if cls.bases and cls.bases[0] in c.classes:
            out.append(("base", cls.bases[0]))
        if cls.module in c.modules:
            out.append(("module", cls.module))
        if cls.methods and f"{q}.{cls.methods[0]}" in c.functions:
            out.append(("method", f"{q}.{cls.methods[0]}"))
    elif q in c.functions:
        kind, owner = c.functions[q].module.split(" ", 1)
        if (kind == "module" and owner in c.modules) or (kind == "class" and owner in c.classes):
            out.append(("module" if kind == "module" else "owner", owner))
    elif q in c.modules:
        funcs, classes = c.modules[q]
        if funcs and funcs[0] in c.functions:
            out.append(("first_function", funcs[0]))
        if classes and classes[0] in c.classes:
            out.append(("first_class", classes[0]))
    return out


@functools.lru_cache(maxsize=1)
def _starts() -> list[str]:
    """The start objects (functions, classes, modules) in a fixed shuffled order. Kinds come in
    the corpus's proportions (~80% functions and methods): weighting classes up would repeat
    them, which is what made near-duplicates."""
    c = build_corpus()
    order = sorted(c.functions) + sorted(c.classes) + sorted(c.modules)
    random.Random("pydocs/starts").shuffle(order)
    return order


def _walk(c: Corpus, rng: random.Random, hops: int, start: str, tries: int = 8,
          ) -> tuple[list[str], list[str], str, str, str] | None:
    """A chain from `start` (up to `tries` random walks), or None if none was found."""
    for _ in range(tries):
        if (made := _chain(c, rng, hops, start)) is not None:
            return made
    return None


def _chain(c: Corpus, rng: random.Random, hops: int, start: str,
           ) -> tuple[list[str], list[str], str, str, str] | None:
    """(path of document ids, relations, fact, parameter, answer) from `start`, or None for
    this draw."""
    path, rels = [start], []
    for _ in range(hops - 1):
        links = [(r, t) for r, t in _links(c, path[-1]) if t not in path]
        if not links:
            return None
        # hubs (a module's page, its first class) are reached from everywhere: drawn less often
        rel, target = rng.choices(links, weights=[_WEIGHT[r] for r, _ in links])[0]
        path.append(target)
        rels.append(rel)
    last = path[-1]
    if last == "builtins.object" and hops > 1:
        return None  # every base chain ends there; too easy a target
    if sum(q.startswith("builtins.") for q in path) > 1:
        return None  # deep chains converge on the builtin exceptions: 16% near-duplicates
    if last in c.modules:
        fact = rng.choice(["functions", "classes"])
        return path, rels, fact, "", str(len(c.modules[last][fact == "classes"]))
    if last in c.functions:
        f = c.functions[last]
        fact = rng.choice((["default", "default"] if f.defaults else [])
                          + (["required", "params", "first_param"] if f.params else ["required"]))
    else:
        cls = c.classes[last]
        fact = rng.choice(["methods", "module", "base"] + (["default"] if cls.init_defaults
                                                            else []))
    param = ""
    if fact == "default":
        table = c.functions[last].defaults if last in c.functions else c.classes[last].init_defaults
        param = rng.choice(sorted(table))
    answer = _fact(c, last, fact, param)
    return (path, rels, fact, param, answer) if answer else None


def _near(c: Corpus, fact: str, answer: str, rng: random.Random, last: str) -> list[str]:
    if answer.isdigit():
        out = [str(int(answer) + 1)] + ([str(int(answer) - 1)] if int(answer) else [])
    elif fact == "module":
        out = rng.sample(sorted({x.module for x in c.classes.values()}), 3)
    elif fact == "base":
        out = rng.sample(sorted(c.classes), 3)
    elif fact == "first_param":  # the other parameters, and the names a guess would give
        out = c.functions[last].params[1:3] + ["self", "args", "x"]
    else:
        out = rng.sample(["None", "True", "False", "0", "1", "-1", "''", "'strict'", "2"], 4)
    return [o for o in out if normalize_text(o) != normalize_text(answer)]
