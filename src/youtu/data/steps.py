"""The datatrove pipeline steps of `youtu data prepare`: our readers as a datatrove reader, our
classifier and filters as datatrove filter steps, MinHash signatures for the domains that get
near-dedup, and per-domain tallies for the manifest.

    from youtu.data.steps import SourceReader, plan_units
    reader = SourceReader(plan_units(cfg, extra_files=[]))
    for doc in reader(rank=0, world_size=1):  # datatrove Documents
        print(doc.metadata["domain"], doc.metadata["source"], len(doc.text))

A document travels as a datatrove `Document` whose metadata holds our `Document`'s fields:
`domain`, `source` and `meta` (JSON). Every step records datatrove stats (documents in, kept,
dropped per reason); the steps here also record `removed/<stage>/<reason>/<domain>/{docs,chars}`
and `<tally>/<domain>/{docs,chars}` labels, from which `youtu.data.prepare` builds the
manifest's filter statistics.

Why ours and not datatrove's Gopher/C4/FineWeb filter classes: ours apply a rule set per domain
profile (prose, code, stem, synthetic; see `youtu.data.filters`), split words on whitespace, and
need no model data, while datatrove's apply one rule set to every document and split words with
a per-language tokenizer (English: spaCy, a large dependency this project does not carry).
The thresholds are the same papers' (Gopher, C4's lorem ipsum, FineWeb's terminal punctuation).
Decontamination is ours too: datatrove's n-gram decontamination indexes lighteval tasks, ours
takes any eval items (APTBench, HumanEval, files).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datatrove.data import Document as DTDocument
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.base import BaseReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.utils.text import simplify_text
from datatrove.utils.word_tokenizers import WordTokenizer

from youtu.data.config import RESERVED_NAMES, DataConfig, DedupConfig, QualityConfig
from youtu.data.dedup import Decontaminator, exact_key, namespace, rolling_hash
from youtu.data.document import Document
from youtu.data.filters import detect_language, profile, quality_reason
from youtu.data.installed_docs import DOCSTRING_SLICES, installed_docs
from youtu.data.sources import embedded_corpus, iter_source, stem_slices

# ---------------------------------------------------------------------------------------------
# documents


def to_datatrove(doc: Document, doc_id: str) -> DTDocument:
    """Our document as a datatrove one (fields in metadata)."""
    return DTDocument(text=doc.text, id=doc_id,
                      metadata={"domain": doc.domain, "source": doc.source, "meta": doc.meta})


def from_datatrove(doc: DTDocument) -> Document:
    """The datatrove document back as ours."""
    md = doc.metadata
    return Document(text=doc.text, domain=md["domain"], source=md["source"],
                    meta=md.get("meta") or {})


def _record(stat_update, key: str, text: str) -> None:
    stat_update(f"{key}/docs")
    stat_update(f"{key}/chars", value=len(text))


# ---------------------------------------------------------------------------------------------
# reading


@dataclasses.dataclass(frozen=True)
class ReadUnit:
    """The smallest piece of input one task reads in order: one part of the embedded corpus, a
    configured source (or one file of a source folder), or one file of extra documents."""

    kind: str  # "embedded" | "installed" | "source" | "extra"
    args: dict

    def documents(self) -> Iterator[Document]:
        if self.kind == "embedded":
            return embedded_corpus(**self.args)
        if self.kind == "installed":
            return installed_docs(**self.args)
        if self.kind == "source":
            from youtu.data.config import SourceConfig

            return iter_source(SourceConfig(**self.args))
        # extra documents: our JSONL of {text, domain, source, meta}
        return (Document(**json.loads(line)) for line in
                Path(self.args["path"]).read_text(encoding="utf-8").splitlines() if line)


def plan_units(cfg: DataConfig, extra_files: list[str]) -> list[ReadUnit]:
    """The read units of a run, in a fixed order: the embedded corpus' code, prose and stem
    parts (independent generators: each call draws the same documents as the whole corpus
    does; the stem part one unit per slice), the installed packages' descriptions and
    docstring slices, each configured source (a folder of JSONL/Parquet files unit per file,
    unless `max_docs` caps the source as a whole), then the extra documents' files."""
    units: list[ReadUnit] = []
    e = cfg.embedded
    if e.enabled:
        caps = {"code_chars": e.code_chars, "prose_chars": e.prose_chars,
                "stem_chars": e.stem_chars}
        for key, cap in caps.items():
            if cap:
                args = {"seed": cfg.seed, "problems_per_doc": e.problems_per_doc,
                        **{k: (cap if k == key else 0) for k in caps}}
                if key != "stem_chars":
                    units.append(ReadUnit("embedded", args))
                else:  # the generated worksheets: one unit per slice (sources.STEM_SLICE_CHARS)
                    units += [ReadUnit("embedded", {**args, "stem_slice": i})
                              for i in range(stem_slices(cap))]
        # Installed packages' docs: descriptions as one unit, docstrings as fixed slices.
        if e.packages_chars:
            units.append(ReadUnit("installed", {"description_chars": e.packages_chars,
                                                "doc_dir": e.doc_dir}))
        if e.package_docstrings_chars:
            n = DOCSTRING_SLICES
            units += [ReadUnit("installed", {"docstring_chars": e.package_docstrings_chars // n,
                                             "slice_index": i, "slices": n})
                      for i in range(n)]
    for source in cfg.sources:
        args = dataclasses.asdict(source)
        path = Path(source.path)
        if source.kind == "auto" and path.is_dir() and not source.max_docs:
            from youtu.data.sources import HF_MARKERS, _kind_of

            if not any((path / m).exists() for m in HF_MARKERS):
                files = sorted(p for p in path.rglob("*") if p.is_file() and _kind_of(p))
                if files and len(files) == sum(1 for p in path.rglob("*") if p.is_file()):
                    # Every file is JSONL/Parquet: one unit per file (same documents, same
                    # order within each file as reading the folder).
                    units += [ReadUnit("source", {**args, "path": str(f),
                                                  "name": source.name or path.name})
                              for f in files]
                    continue
        units.append(ReadUnit("source", args))
    units += [ReadUnit("extra", {"path": f}) for f in extra_files]
    return units


class SourceReader(BaseReader):
    """Reads the units `rank, rank + world_size, ...` through our readers (their errors name the
    file, line and `[[data.sources]]` key to fix). Chat documents without text get the rendered
    conversation as text (what dedup and decontamination compare)."""

    name = "youtu sources"

    def __init__(self, units: list[ReadUnit]):
        super().__init__()
        self.units = units

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1
            ) -> DocumentsPipeline:
        for u in range(rank, len(self.units), world_size):
            for n, doc in enumerate(self.units[u].documents()):
                if doc.domain == "chat" and not doc.text and doc.meta.get("messages"):
                    from youtu.tokenizer.chat import render_chat

                    doc.text = render_chat(doc.meta["messages"], doc.meta.get("tools"))
                if not doc.text:
                    continue
                self.stat_update(f"read/{doc.source}", "forwarded")
                out = to_datatrove(doc, f"{u}/{n}")
                self.update_doc_stats(out)
                yield out


class TaskFileReader(JsonlReader):
    """Reads exactly the file an earlier stage's task of the same rank wrote (`{rank}.jsonl`):
    datatrove's default file sharding would shift every rank after a task that wrote nothing,
    and dedup filters match documents by their index in the task's stream."""

    name = "youtu task file"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1
            ) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl"
        if not self.data_folder.exists(name):
            return
        for doc in self.read_files_shard([name]):
            self.update_doc_stats(doc)
            yield doc


def _record_of(writer, doc: DTDocument) -> dict:
    """JsonlWriter adapter: datatrove's default record (the non-empty fields) without its
    `dataclasses.asdict`, which deep-copies every document's metadata (~25 us a document, twice
    per document in a run). Documents with media keep the default."""
    if doc.media:
        return writer._default_adapter(doc)
    return {k: v for k, v in (("text", doc.text), ("id", doc.id), ("metadata", doc.metadata)) if v}


def task_file_writer(folder: str):
    """The JSONL file a stage's task writes for the next stage's task of the same rank."""
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    return JsonlWriter(folder, output_filename="${rank}.jsonl", compression=None,
                       adapter=_record_of)


def task_file_reader(folder: str) -> TaskFileReader:
    # Uncompressed: written once and read once on local disk, gzip would cost more than it saves.
    return TaskFileReader(folder, compression=None, text_key="text", id_key="id")


# ---------------------------------------------------------------------------------------------
# classification and filters


def classifier(cfg: DataConfig):
    """The domain classifier for sources with domain 'auto'."""
    from youtu.data.domain import NaiveBayesClassifier, classify_rules

    if cfg.classifier == "rules":
        return classify_rules
    # Fit on ~300k chars per domain of the labelled embedded corpus (always available, whatever
    # the run's caps): about a second's work, once per task.
    sample = embedded_corpus(cfg.seed, code_chars=300_000, prose_chars=300_000,
                             stem_chars=300_000)
    return NaiveBayesClassifier.fit((d.text, d.domain) for d in sample).predict


class Classify(PipelineStep):
    """Labels documents of domain 'auto' (rules or naive Bayes) and counts what comes in per
    domain (`input/<domain>`)."""

    type = "🏷 - CLASSIFY"
    name = "youtu domain"

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg
        self._classify = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1
            ) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                md = doc.metadata
                if md["domain"] == "auto":
                    if self._classify is None:
                        self._classify = classifier(self.cfg)
                    md["domain"] = self._classify(doc.text)
                if md["domain"] in RESERVED_NAMES:
                    raise ValueError(f"a document from source {md['source']!r} has domain "
                                     f"{md['domain']!r}, the name of a shard subfolder "
                                     f"({', '.join(RESERVED_NAMES)}); give it another domain")
                _record(self.stat_update, f"input/{md['domain']}", doc.text)
                self.stat_update("total", "forwarded")
            yield doc


class _YoutuFilter(BaseFilter):
    """A BaseFilter that also records removals per domain with their characters."""

    stage = ""

    def drop(self, doc: DTDocument, reason: str) -> tuple[bool, str]:
        _record(self.stat_update, f"removed/{self.stage}/{reason}/{doc.metadata['domain']}",
                doc.text)
        return False, reason


class LanguageFilter(_YoutuFilter):
    """Language id on prose domains (`youtu.data.filters.detect_language`); keeps `languages`."""

    name = "youtu language"
    stage = "language"

    def __init__(self, languages: list[str]):
        super().__init__()
        self.languages = list(languages)

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        language = "en"
        if profile(doc.metadata["domain"]) == "prose":
            language = detect_language(doc.text)
        doc.metadata["language"] = language
        if language not in self.languages:
            return self.drop(doc, language)
        return True


class QualityFilter(_YoutuFilter):
    """Gopher/C4/FineWeb/StarCoder rules per domain profile (`youtu.data.filters`)."""

    name = "youtu quality"
    stage = "quality"

    def __init__(self, cfg: QualityConfig):
        super().__init__()
        self.cfg = cfg

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        reason = quality_reason(doc.text, doc.metadata["domain"], self.cfg,
                                doc.metadata.get("language", "en"))
        return self.drop(doc, reason) if reason else True


class DecontamFilter(_YoutuFilter):
    """Drops documents sharing a word n-gram (13) with an eval item; the index is the one the
    coordinator built and saved once (`Decontaminator.save`), loaded by each task."""

    name = "youtu decontamination"
    stage = "decontam"

    def __init__(self, index_file: str):
        super().__init__()
        self.index_file = index_file
        self._decon: Decontaminator | None = None

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        if self._decon is None:
            self._decon = Decontaminator.load(self.index_file)
        if self._decon.contaminated(doc.text):
            return self.drop(doc, "ngram_overlap")
        return True


class Tally(PipelineStep):
    """Counts the documents and characters passing by, per domain (`<label>/<domain>/...`)."""

    type = "🔢 - TALLY"

    def __init__(self, label: str):
        self.name = f"youtu tally {label}"
        super().__init__()
        self.label = label

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1
            ) -> DocumentsPipeline:
        for doc in data:
            _record(self.stat_update, f"{self.label}/{doc.metadata['domain']}", doc.text)
            self.stat_update("total", "forwarded")
            yield doc


# ---------------------------------------------------------------------------------------------
# dedup


def exact_content(doc: DTDocument) -> str:
    """datatrove ExactDedupConfig.content_getter: namespace + whitespace-normalised text."""
    return exact_key(doc.text, doc.metadata["domain"])


def exact_priority(doc: DTDocument) -> int:
    """datatrove ExactDedupConfig.document_priority (the highest is kept): earlier read units
    first, so of identical documents the first in read order survives (within a unit datatrove
    keeps the lowest index)."""
    return 65535 - min(int(doc.id.split("/", 1)[0]), 65534)


class WhitespaceWords(WordTokenizer):
    """Words as `str.split` finds them (our shingles' words; datatrove's English default needs
    spaCy). Only `word_tokenize` is used by MinHash."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


_SHINGLE_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd
WORD_HASH_CACHE = 1 << 20
"""Words whose hash a signature task keeps (cleared when full: ~100 MB at most)."""


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: neighbouring windows' polynomial hashes are linearly related
    (mod 2^64), and MinHash's permutations are linear too; mixed, they behave as independent."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


class MinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash stage 1, restricted to `near_domains`: other documents get no
    signature (they keep their index, so stage 4 still lines up), and each namespace's shingles
    are salted so chat conversations are only compared with chat.

    Shingles are datatrove's (its text normalisation, `shingle_words`-word windows of the
    words), but each is hashed as a polynomial (mod 2^64, then mixed) over its words' sha1
    hashes, which a per-task cache keeps: datatrove hashes every joined shingle string with
    sha1, 152 us of a ~150-word document and half of the signature's time (245 vs 52 us a
    document, measured side by side on 2 busy cores)."""

    def __init__(self, output_folder: str, config, near_domains: list[str]):
        super().__init__(output_folder, config=config, language=WhitespaceWords())
        self.near_domains = list(near_domains)
        self._salt = np.uint64(0)
        self._word_hashes: dict[str, int] = {}

    def get_shingles(self, text: str) -> np.ndarray:
        words = self.word_tokenizer.word_tokenize(simplify_text(text, self.config.norm_config))
        n = self.config.n_grams
        if len(words) < n:  # as datatrove: no shingle, no signature
            return np.empty((0, 1), dtype=np.uint64)
        cache = self._word_hashes
        if len(cache) > WORD_HASH_CACHE:
            cache.clear()
        word_hash = self._hash_func
        ids = np.array([cache[w] if w in cache else cache.setdefault(w, word_hash(w))
                        for w in words], dtype=np.uint64)
        shingles = _mix64(rolling_hash(ids, n, _SHINGLE_MULT))
        return (shingles ^ self._salt if self._salt else shingles).reshape(-1, 1)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        def eligible(docs):
            for doc in docs:
                domain = doc.metadata["domain"]
                self._salt = np.uint64(0x9E3779B97F4A7C15 if namespace(domain) == "chat" else 0)
                yield doc if domain in self.near_domains else DTDocument(text="", id=doc.id)

        return super().run(eligible(data), rank, world_size)


def minhash_config(cfg: DedupConfig):
    """datatrove's MinhashConfig for our dedup settings: the LSH split `lsh_bands` picks,
    `shingle_words`-word shingles of lowercased whitespace-normalised text, sha1 64-bit hashes
    (of the words: `MinhashSignature.get_shingles` combines them per shingle)."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    from youtu.data.dedup import lsh_bands

    bands, rows = lsh_bands(cfg.threshold, cfg.num_perm)
    # Lowercase and whitespace only, like the shingles of the in-memory LSH before: replacing
    # numbers and punctuation (datatrove's defaults) would make distinct code files near-equal.
    norm = TextNormConfig(lowercase=True, norm_whitespace=True, remove_punctuation=False,
                          norm_unicode_diacritics=False, norm_numbers=False,
                          norm_weekdays=False, norm_monthnames=False)
    return MinhashConfig(n_grams=cfg.shingle_words, num_buckets=bands, hashes_per_bucket=rows,
                         seed=1, norm_config=norm, hash_config=HashConfig(64, "sha1"))
