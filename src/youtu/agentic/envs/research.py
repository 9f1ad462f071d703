"""Deep-research environment: multi-hop questions over a generated, linked document collection.

    env = ResearchEnv()
    task = env.generate(seed=11, difficulty=3)           # a 3-hop question
    env.call_tool(task, None, "search", {"query": "Zentor Works founder"})
    env.call_tool(task, None, "open", {"doc_id": "d0042"})

The collection is a small invented world (cities on rivers, people born in cities who studied
at institutes and founded companies or invented things), written out as one encyclopedia-style
document per entity whose text names the linked entities. It is generated deterministically
from a world id (`seed // WORLD_SPAN`, so evaluation seeds >= 1,000,000 get worlds synthesis
never saw), with deliberate near-duplicate names ("Varden" and "New Varden") so that reading
the right document matters. `search` is a real BM25 index over the collection (k1 = 1.5,
b = 0.75, the Robertson/Sparck Jones defaults); `open` returns a document.

Questions follow a chain of functional relations from an anchor entity to an attribute
("How long is the river through the birthplace of the founder of Zentor Works?"). Forward
synthesis walks the chain from a random anchor; reverse synthesis starts from a random document
holding the answer and walks its inbound links back to an anchor. Answers are checked against
the ground truth after normalisation (case, punctuation, thousands separators).
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs.base import Env, function_schema, normalize_text
from youtu.agentic.trajectory import Step, Task, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

WORLD_SPAN = 50
"""Task seeds per generated world (a world has ~190 documents; at 200 seeds per world 11% of
50k tasks repeated, mostly 1-hop questions)."""

_SYLLABLES = ["ka", "lo", "mer", "vin", "tor", "sa", "rel", "do", "qua", "bri", "zen", "fal",
              "mo", "ni", "ther", "gal", "var", "den", "ost", "lu", "pra", "ke", "sol", "an"]
_FIRST = ["Ada", "Bram", "Cleo", "Dario", "Edda", "Felix", "Greta", "Hugo", "Ines", "Jonas",
          "Kaia", "Lev", "Mira", "Nils", "Oona", "Pavel", "Rhea", "Soren", "Tove", "Ugo"]
_JOBS = ["chemist", "mason", "physician", "cartographer", "botanist", "surveyor"]
_INDUSTRIES = ["shipbuilding", "optics", "textile", "software", "printing", "ceramics"]
_THINGS = ["lens grinder", "loom regulator", "tide clock", "seed drill", "signal lamp",
           "water filter", "typewriter ribbon", "rope bridge", "pressure valve", "kiln damper"]

# relation: (from type, to type, phrase applied to a description of the source entity)
RELATIONS = {
    "founder": ("company", "person", "the founder of {}"),
    "inventor": ("invention", "person", "the inventor of the {}"),
    "born_in": ("person", "city", "the birthplace of {}"),
    "studied_at": ("person", "institute", "the institute where {} studied"),
    "located_in": ("institute", "city", "the city where {} is located"),
    "hq": ("company", "city", "the city where {} has its headquarters"),
    "river": ("city", "river", "the river that flows through {}"),
}
ATTRIBUTES = {
    "city": [("population", "What is the population of {}?"),
             ("founded", "In what year was {} founded?")],
    "river": [("length_km", "How long, in kilometres, is {}?")],
    "person": [("birth_year", "In what year was {} born?"),
               ("job", "What was the profession of {}?")],
    "company": [("founded", "In what year was {} founded?"),
                ("industry", "In what industry is {}?")],
    "institute": [("founded", "In what year was {} founded?")],
    "invention": [("year", "In what year was {} invented?")],
}
_LEADS = ["", "", "Research question: ", "Using the collection, answer: ", "Look this up: ",
          "I need a fact checked. ", "From the documents: "]
_ATTR_NAMES = {"population": "population", "founded": "founding year", "length_km": "length in km",
               "birth_year": "birth year", "job": "profession", "industry": "industry",
               "year": "year of invention"}


@dataclass
class Entity:
    id: str
    type: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    """relation -> entity id."""


@dataclass
class World:
    entities: dict[str, Entity]
    docs: dict[str, str]
    """doc id (= entity id) -> text; the title is the first line."""
    index: BM25


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class BM25:
    """Okapi BM25 over a fixed collection (k1 = 1.5, b = 0.75).

    A term's weight in a document does not depend on the query, so it is computed once per
    (term, document) at index time and a search only adds arrays: over the ~13,000 API
    documents of pydocs, where a query's package name ("sympy") is in 4,000 of them, scoring
    in Python per posting took 13 ms a search, most of a task's cost.
    """

    def __init__(self, docs: dict[str, str], k1: float = 1.5, b: float = 0.75):
        import numpy as np

        self.k1, self.b = k1, b
        self.ids = list(docs)
        tfs = [Counter(_tokens(docs[i])) for i in self.ids]
        lens = [sum(tf.values()) for tf in tfs]
        avg = sum(lens) / max(len(lens), 1)
        df = Counter(t for tf in tfs for t in tf)
        n = len(self.ids)
        idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for k, tf in enumerate(tfs):
            for t, f in tf.items():
                norm = f + k1 * (1 - b + b * lens[k] / avg)
                docs_t, weights_t = postings.setdefault(t, ([], []))
                docs_t.append(k)
                weights_t.append(idf[t] * f * (k1 + 1) / norm)
        self.postings = {t: (np.array(d, dtype=np.int64), np.array(w))
                         for t, (d, w) in postings.items()}
        # rank of each id in sorted order: ties are broken by doc id
        self._id_rank = np.argsort(np.argsort(np.array(self.ids, dtype=object)))

    def search(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        """The top `k` (doc id, score), best first; ties broken by doc id."""
        import numpy as np

        scores = np.zeros(len(self.ids))
        for t in sorted(set(_tokens(query))):  # (sorted: the sum's order, hence ties, is fixed)
            if t in self.postings:
                docs, weights = self.postings[t]
                scores[docs] += weights  # a document appears once per term
        hit = np.flatnonzero(scores)
        best = hit[np.lexsort((self._id_rank[hit], -scores[hit]))][:k]
        return [(self.ids[d], float(scores[d])) for d in best]


@functools.lru_cache(maxsize=8)
def build_world(world_id: int) -> World:
    """The collection of world `world_id` (deterministic)."""
    rng = random.Random(f"world/{world_id}")
    ents: dict[str, Entity] = {}
    names: set[str] = set()

    def add(type_: str, name: str, **attrs: Any) -> Entity:
        e = Entity(f"d{len(ents):04d}", type_, name, attrs)
        ents[e.id] = e
        names.add(name)
        return e

    def fresh(make) -> str:
        while (n := make()) in names:
            pass
        return n

    rivers = [add("river", fresh(lambda: f"{_name(rng, 2)} River"), length_km=rng.randint(40, 2900))
              for _ in range(20)]
    cities = []
    for _ in range(32):
        base = fresh(lambda: _name(rng, 2) + rng.choice(["vik", "ford", "heim", "ton", "a"]))
        cities.append(add("city", base, population=rng.randint(8, 900) * 1000 + rng.randint(0, 999),
                          founded=rng.randint(900, 1850)))
        if rng.random() < 0.3:  # a near-duplicate name: reading the right document matters
            cities.append(add("city", f"New {base}", population=rng.randint(5, 300) * 1000,
                              founded=rng.randint(1600, 1950)))
    for c in cities:
        c.links["river"] = rng.choice(rivers).id
    institutes = [add("institute", fresh(lambda: f"{_name(rng, 2)} Institute"),
                      founded=rng.randint(1500, 1980)) for _ in range(14)]
    for inst in institutes:
        inst.links["located_in"] = rng.choice(cities).id
    people = []
    for _ in range(60):
        first = rng.choice(_FIRST)
        surname = _name(rng, 2)
        p = add("person", fresh(lambda: f"{first} {surname}" if f"{first} {surname}" not in names
                                else f"{rng.choice(_FIRST)} {surname}"),
                birth_year=rng.randint(1800, 1990), job=rng.choice(_JOBS))
        p.links["born_in"] = rng.choice(cities).id
        p.links["studied_at"] = rng.choice(institutes).id
        people.append(p)
    for _ in range(28):
        suffix = rng.choice(["Works", "Labs", "Company"])
        c = add("company", fresh(lambda: f"{_name(rng, 2)} {suffix}"),
                founded=rng.randint(1850, 2015), industry=rng.choice(_INDUSTRIES))
        c.links["founder"] = rng.choice(people).id
        c.links["hq"] = rng.choice(cities).id
    for thing in _THINGS:
        inv = add("invention", f"{_name(rng, 2)} {thing}", year=rng.randint(1820, 2000))
        inv.links["inventor"] = rng.choice(people).id
    docs = {e.id: _document(e, ents) for e in ents.values()}
    return World(ents, docs, BM25(docs))


def _document(e: Entity, ents: dict[str, Entity]) -> str:
    def n(rel: str) -> str:
        return ents[e.links[rel]].name
    inbound = [(rel, o) for o in ents.values() for rel, t in o.links.items() if t == e.id]
    a = e.attrs
    if e.type == "city":
        body = (f"{e.name} is a city on the {n('river')}. It was founded in {a['founded']} and "
                f"has a population of {a['population']:,}.")
        born = [o.name for rel, o in inbound if rel == "born_in"][:4]
        if born:
            body += f" People born in {e.name} include {', '.join(born)}."
    elif e.type == "river":
        body = f"The {e.name} is a river {a['length_km']:,} km long."
        on = [o.name for rel, o in inbound if rel == "river"][:5]
        if on:
            body += f" Cities on its banks include {', '.join(on)}."
    elif e.type == "person":
        body = (f"{e.name} (born {a['birth_year']}) was a {a['job']} born in {n('born_in')}. "
                f"{e.name.split()[0]} studied at the {n('studied_at')}.")
        made = [o.name for rel, o in inbound if rel in ("founder", "inventor")]
        if made:
            body += f" {e.name} is known for {', '.join(made)}."
    elif e.type == "institute":
        body = f"The {e.name} is a school in {n('located_in')}, founded in {a['founded']}."
    elif e.type == "company":
        body = (f"{e.name} is a {a['industry']} company founded in {a['founded']} by "
                f"{n('founder')}. Its headquarters are in {n('hq')}.")
    else:
        body = f"The {e.name} is a device invented by {n('inventor')} in {a['year']}."
    return f"{e.name}\n{body}"


def _answer_text(value: Any) -> str:
    return f"{value}" if not isinstance(value, int) else str(value)


class ResearchEnv(Env):
    """Multi-hop question answering with `search` and `open` over a generated collection."""

    name = "research"
    version = "1"
    system_prompt = ("You are a research agent. Break the question into hops, search the "
                     "document collection, open documents to read them, check each fact, and "
                     "give the final answer in \\boxed{}.")
    max_difficulty = 4

    @property
    def tools(self) -> list[dict[str, Any]]:
        return [function_schema("search", "BM25 search over the document collection; returns "
                                "the top results as 'doc_id | title | snippet'.",
                                {"query": {"type": "string"}}),
                function_schema("open", "Open a document by id and read its full text.",
                                {"doc_id": {"type": "string"}})]

    def world(self, task: Task) -> World:
        return build_world(task.meta["world"])

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        hops = self._difficulty(difficulty)
        world_id = seed // WORLD_SPAN
        w = build_world(world_id)
        rng = random.Random(f"research/{seed}/{difficulty}")
        mode = "reverse" if rng.random() < 0.5 else "forward"
        chain = _reverse_chain(w, rng, hops) if mode == "reverse" else _forward_chain(w, rng, hops)
        anchor, rels, target, attr = chain
        desc = anchor.name
        for rel in rels:
            desc = RELATIONS[rel][2].format(desc)
        question = dict(ATTRIBUTES[target.type])[attr].format(desc)
        question = rng.choice(_LEADS) + question[0].upper() + question[1:]
        answer = _answer_text(target.attrs[attr])
        path = [anchor]
        for rel in rels:
            path.append(w.entities[path[-1].links[rel]])
        steps = []
        for k, ent in enumerate(path):
            hits = self._search(w, ent.name)
            steps.append(Step(f"Search for {ent.name}", "search", {"query": ent.name}, hits))
            steps.append(Step(f"Open the document about {ent.name}", "open", {"doc_id": ent.id},
                              w.docs[ent.id]))
        task = Task(id=f"research-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, prompt=question, answer=answer, steps=steps,
                    meta={"world": world_id, "synthesis": mode, "hops": hops,
                          "path": [e.id for e in path], "relations": rels, "attribute": attr,
                          "plan": [f"Find {anchor.name}"] + [
                              f"Follow '{rel}' to {RELATIONS[rel][1]}" for rel in rels] +
                          [f"Read the {_ATTR_NAMES[attr]}"]})
        task.near_misses = _near(w, target, attr, answer)
        return task

    def _search(self, w: World, query: str) -> str:
        hits = w.index.search(query, k=5)
        if not hits:
            return "no results"
        lines = []
        for doc_id, _ in hits:
            title, body = w.docs[doc_id].split("\n", 1)
            lines.append(f"{doc_id} | {title} | {body[:80]}")
        return "\n".join(lines)

    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        w = self.world(task)
        if name == "search":
            query = arguments.get("query")
            if not isinstance(query, str) or not query.strip():
                return "error: 'query' must be a non-empty string"
            return self._search(w, query)
        if name == "open":
            doc_id = arguments.get("doc_id")
            if doc_id not in w.docs:
                return f"error: no document {doc_id!r}; use an id from the search results"
            return w.docs[doc_id]
        return f"error: unknown tool {name!r}; available: search, open"

    def check(self, task: Task, answer: str) -> Verdict:
        ok = normalize_text(answer) == normalize_text(task.answer)
        return Verdict(ok, float(ok), f"{answer!r} {'==' if ok else '!='} {task.answer!r}",
                       "research/ground-truth")

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        w = self.world(task)
        path = [w.entities[i] for i in task.meta["path"]]
        rels = task.meta["relations"]
        attr = _ATTR_NAMES[task.meta["attribute"]]
        hops = (f"one document, about {path[0].name}" if not rels else
                f"{len(rels)} link(s) from {path[0].name}, one document per entity")
        b.think("analysis", rng.choice([
            f"Question: {task.prompt} I need the {attr}; it takes {hops}.",
            f"{task.prompt} Starting point: {path[0].name}. Wanted: a {attr}.",
            f"To answer \"{task.prompt}\" I will read {hops}, checking names carefully "
            "(similar names exist).",
            f"The {attr} is asked for. {task.prompt}"]))
        plan = task.meta["plan"]
        b.think("plan", "\n".join(f"{i + 1}. {p}" for i, p in enumerate(plan)) if rng.random() < 0.7
                else "First " + ", then ".join(p[0].lower() + p[1:] for p in plan) + ".")
        slip = rng.choice(["wrong_document", "wrong_argument", "premature_answer"]) \
            if mistake else ""
        slip_at = rng.randrange(len(path)) if mistake else -1
        for k, ent in enumerate(path):
            query = ent.name if rng.random() < 0.7 else f"{ent.name} {ent.type}"
            b.think("action", rng.choice([f"Search for {ent.name}.", f"Look up {ent.name}.",
                                          f"Find the document on {ent.name}."]))
            hits = b.call("search", {"query": query})
            ids = [line.split(" | ")[0] for line in hits.splitlines()]
            wrong = next((i for i in ids if i != ent.id and w.entities[i].type == ent.type), None)
            if k == slip_at and slip == "wrong_document" and wrong is not None:
                b.think("action", f"Open the top-looking result {wrong}.", mistake=True)
                text = b.call("open", {"doc_id": wrong}, mistake=True)
                guess = _guess(w.entities[wrong], task, k == len(path) - 1)
                b.mistake("wrong_document", answer=guess if guess != task.answer else None,
                          note=f"opened {w.entities[wrong].name} instead of {ent.name}")
                b.think("reflection", f"This document is about {text.splitlines()[0]}, not "
                        f"{ent.name}: wrong document. The right one is {ent.id}.")
            if k == slip_at and slip == "wrong_argument":
                b.think("action", f"Open the document titled {ent.name}.", mistake=True)
                err = b.call("open", {"doc_id": ent.name}, mistake=True)
                b.mistake("wrong_argument", note="passed a title where open needs a doc id")
                b.think("reflection", f"{err.split(';')[0]}: open takes the id from the results "
                        f"({ent.id}), not the title.")
            b.think("action", rng.choice([f"Open {ent.id}, the document about {ent.name}.",
                                          f"Read {ent.id}.", f"{ent.id} is {ent.name}; open it."]))
            doc = b.call("open", {"doc_id": ent.id})
            if k < len(rels):
                nxt = w.entities[ent.links[rels[k]]]
                said = next((x for x in doc.split(". ") if nxt.name in x), nxt.name).strip()
                b.think("reflection", rng.choice([
                    f"The document says: \"{said.rstrip('.')}.\" So "
                    f"{RELATIONS[rels[k]][2].format(ent.name)} is {nxt.name}.",
                    f"{RELATIONS[rels[k]][2].format(ent.name)[0].upper()}"
                    f"{RELATIONS[rels[k]][2].format(ent.name)[1:]} is {nxt.name}.",
                    f"Next hop: {nxt.name} (\"{said[:100]}\")."]))
                early = _guess(ent, task, True) if task.meta["attribute"] in ent.attrs else None
                if (slip == "premature_answer" and k == slip_at and early is not None
                        and normalize_text(early) != normalize_text(task.answer)):
                    b.think("summary", f"The {attr} here is {early}; that is the answer.",
                            mistake=True)
                    b.think("action", f"Search for {nxt.name} to double-check.", mistake=True)
                    b.call("search", {"query": nxt.name}, mistake=True)
                    b.mistake("premature_answer", answer=early,
                              note=f"answered with the {attr} of {ent.name}, a hop short")
                    b.think("reflection", f"No: {early} belongs to {ent.name}; the question "
                            f"asks about {nxt.name}. Keep following the chain.")
        value = task.answer
        b.think("reflection", rng.choice([
            f"The document gives the {attr} of {path[-1].name}: {value}.",
            f"{path[-1].name}: {attr} {value}.", f"Found it: {value}."]))
        b.think("summary", rng.choice([" -> ".join(e.name for e in path) + f"; answer: {value}.",
                                       f"Followed {len(path)} document(s); the {attr} is {value}.",
                                       f"Answer: {value} (from {path[-1].id})."]))
        return rng.choice([f"The answer is \\boxed{{{value}}}.", f"\\boxed{{{value}}}",
                           f"It is \\boxed{{{value}}}."])


def _guess(ent: Entity, task: Task, last: bool) -> str | None:
    """The answer a wrong document on the last hop would have given."""
    if not last or task.meta["attribute"] not in ent.attrs:
        return None
    return _answer_text(ent.attrs[task.meta["attribute"]])


def _forward_chain(w: World, rng: random.Random, hops: int):
    rels_by_type: dict[str, list[str]] = {}
    for rel, (src, _, _) in RELATIONS.items():
        rels_by_type.setdefault(src, []).append(rel)
    while True:
        anchor = rng.choice(list(w.entities.values()))
        ent, rels = anchor, []
        while len(rels) < hops - 1 and rels_by_type.get(ent.type):
            rel = rng.choice(rels_by_type[ent.type])
            rels.append(rel)
            ent = w.entities[ent.links[rel]]
        if len(rels) == hops - 1:
            attr = rng.choice(ATTRIBUTES[ent.type])[0]
            return anchor, rels, ent, attr


def _reverse_chain(w: World, rng: random.Random, hops: int):
    inbound: dict[str, list[tuple[str, Entity]]] = {}
    for o in w.entities.values():
        for rel, t in o.links.items():
            inbound.setdefault(t, []).append((rel, o))
    while True:
        target = rng.choice(list(w.entities.values()))
        attr = rng.choice(ATTRIBUTES[target.type])[0]
        ent, rels = target, []
        while len(rels) < hops - 1 and inbound.get(ent.id):
            rel, src = rng.choice(inbound[ent.id])
            rels.insert(0, rel)
            ent = src
        if len(rels) == hops - 1:
            return ent, rels, target, attr


def _near(w: World, target: Entity, attr: str, answer: str) -> list[str]:
    out = [_answer_text(e.attrs[attr]) for e in w.entities.values()
           if e.type == target.type and e.id != target.id and attr in e.attrs][:3]
    if isinstance(target.attrs[attr], int):
        out += [str(target.attrs[attr] + 1), str(target.attrs[attr] - 10)]
    return [o for o in dict.fromkeys(out) if normalize_text(o) != normalize_text(answer)]
