"""Quality rules on crafted good and bad documents, language id, removal statistics."""

from __future__ import annotations

import random

import pytest

from youtu.data.config import QualityConfig
from youtu.data.filters import FilterStats, detect_language, ngram_repetition, quality_reason
from youtu.data.stem import worksheet

CFG = QualityConfig()
GOOD_PROSE = (
    "The river town grew slowly over two centuries. Farmers brought grain to the mill, and "
    "merchants built warehouses along the docks so that boats could load before the winter "
    "ice arrived.\nBy the time the railway came, most families had a member working with the "
    "trade. Schools opened near the market square, and a small library collected the letters "
    "and diaries that describe daily life in that period.\nHistorians still use those records "
    "to study how prices, weather and migration shaped the region.")

_rng = random.Random(0)
_VOCAB = ("apple river stone market window garden silver morning lantern harbor violin meadow "
          "thunder pepper candle island forest copper velvet canyon").split()


def _random_words(n: int) -> str:
    return " ".join(_rng.choice(_VOCAB) for _ in range(n))


BAD_PROSE = {
    "too_short": "The cat sat on the mat and that was all.",
    "mean_word_length": " ".join(["a an of to be it is"] * 12) + " the and with that have.",
    "symbol_ratio": GOOD_PROSE.replace(".", " #tag ### ..."),
    "bullet_lines": "\n".join(f"- item {i} with the words to be and of that have." for i in range(60)),
    "ellipsis_lines": "\n".join(f"Line {i} of the story and the end with that..." for i in range(60)),
    "alpha_words": "the and of to " + " ".join(str(i * 7919) for i in range(80)) + " with that.",
    "stop_words": "Apples oranges bananas grapes melons. " * 3 + _random_words(60) + ".",
    "lorem_ipsum": GOOD_PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "terminal_punctuation": "\n".join(f"the {w} and of to that with have" for w in _VOCAB) * 1,
    "duplicate_lines": "\n".join(["The same line of text and of the river that we have."] * 40
                                 + [GOOD_PROSE]),
    "top_2gram": GOOD_PROSE + " " + "market square " * 80,
}


def test_good_prose_passes():
    assert quality_reason(GOOD_PROSE, "commonsense", CFG) is None


@pytest.mark.parametrize("reason", sorted(BAD_PROSE))
def test_bad_prose_is_removed_for_the_right_reason(reason):
    assert quality_reason(BAD_PROSE[reason], "commonsense", CFG) == reason


def test_repeated_long_ngrams_are_caught():
    passage = GOOD_PROSE.split("\n")[0]
    text = "\n".join(f"Chapter {i}. {passage} {_random_words(40)}." for i in range(5))
    top, dup = ngram_repetition(text.split())
    assert dup[0] > CFG.max_dup_ngram_frac[0]
    assert quality_reason(text, "commonsense", CFG).startswith(("duplicate_", "top_"))


def test_ngram_repetition_on_known_text():
    top, dup = ngram_repetition("a b a b a b".split())
    assert top[0] == pytest.approx(1.0)  # "a b" occurs 3 times: 6 of 6 word chars
    assert ngram_repetition("one two three four five six".split()) == ([0.0] * 3, [0.0] * 6)


def _naive_ngram_repetition(words):
    """Gopher's statistics by their definition: n-gram tuples counted with a Counter. For the
    top n-grams, every value a most frequent n-gram gives (ties may differ in characters)."""
    from collections import Counter

    total = max(sum(map(len, words)), 1)
    top, dup = [], []
    for n in range(2, 11):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = Counter(grams)
        if n <= 4:
            most = max(counts.values(), default=0)
            top.append({most * sum(map(len, g)) / total for g, c in counts.items() if c == most}
                       if most >= 2 else {0.0})
        else:
            covered = set()
            for i, g in enumerate(grams):
                if counts[g] > 1:
                    covered.update(range(i, i + n))
            dup.append(sum(len(words[j]) for j in covered) / total)
    return top, dup


def test_ngram_repetition_matches_the_definition_on_random_documents():
    rng = random.Random(0)
    for _ in range(400):
        vocab = [("w" * rng.randint(1, 4)) + str(i) for i in range(rng.choice([2, 3, 8, 50]))]
        words = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 2, 4, 9, 10, 11, 40, 200]))]
        top, dup = ngram_repetition(words)
        want_top, want_dup = _naive_ngram_repetition(words)
        assert all(t in w for t, w in zip(top, want_top)), (words, top, want_top)
        assert dup == pytest.approx(want_dup, abs=1e-12), words


def _naive_script(ch: str) -> str | None:
    o = ord(ch)
    if o < 128:
        return "latin" if ch.isalpha() else None
    for script, ranges in {"cjk": [(0x4E00, 0x9FFF), (0x3400, 0x4DBF)], "kana": [(0x3040, 0x30FF)],
                           "hangul": [(0xAC00, 0xD7AF), (0x1100, 0x11FF)],
                           "cyrillic": [(0x0400, 0x04FF)], "arabic": [(0x0600, 0x06FF)],
                           "latin": [(0x00C0, 0x024F)]}.items():
        if any(a <= o <= b for a, b in ranges):
            return script
    return None


def test_script_counts_match_a_character_by_character_count():
    from collections import Counter

    from youtu.data.filters import _script_counts

    rng = random.Random(0)
    blocks = [(0x20, 0x7E), (0x80, 0x2FF), (0x3000, 0x30FF), (0x3400, 0x9FFF), (0xAC00, 0xD7AF),
              (0x1100, 0x11FF), (0x0400, 0x04FF), (0x0600, 0x06FF), (0x2000, 0x206F)]
    for _ in range(500):
        chosen = rng.sample(blocks, rng.randint(1, 3))
        text = "".join(chr(rng.randint(*rng.choice(chosen))) for _ in range(rng.randint(0, 200)))
        want = Counter(s for s in map(_naive_script, text) if s)
        assert {k: v for k, v in _script_counts(text).items() if v} == dict(want), text


def test_code_rules():
    good = "\n".join(f"def f{i}(x):\n    return x * {i} + 1\n" for i in range(30))
    assert quality_reason(good, "code", CFG) is None
    assert quality_reason("x = 1\n", "code", CFG) == "too_short"
    assert quality_reason(good + "\ny = '" + "z" * 1200 + "'\n", "code", CFG) == "max_line_length"
    assert quality_reason("# auto-generated file, do not edit\n" + good, "code", CFG) == "auto_generated"
    assert quality_reason("{}[]();=+-*/ x\n" * 50, "code", CFG) == "alnum_fraction"


def test_stem_profile_keeps_worked_math_that_prose_rules_would_drop():
    text, _ = worksheet(random.Random(0), 8)
    assert quality_reason(text, "stem", CFG) is None
    assert quality_reason(text, "commonsense", CFG) is not None


def test_synthetic_domains_only_check_length():
    assert quality_reason("<tool_call>{}</tool_call>", "agent", CFG) is None
    assert quality_reason("x" * (CFG.max_chars + 1), "chat", CFG) == "too_long"


@pytest.mark.parametrize("text,lang", [
    (GOOD_PROSE, "en"),
    ("Der Fluss fließt durch die Stadt, und die Bauern bringen ihr Getreide zur Mühle. "
     "Die Kaufleute bauten Lagerhäuser entlang der Docks.", "other"),
    ("Le fleuve traverse la ville et les paysans apportent leur grain au moulin chaque année.",
     "other"),
    ("河流缓慢地穿过小镇，农民把粮食运到磨坊，商人在码头旁建造仓库。", "zh"),
    ("川はゆっくりと町を流れ、農民は穀物を製粉所に運びました。", "ja"),
    ("Река медленно течёт через город, и крестьяне везут зерно на мельницу.", "ru"),
    ("12345 678 90", "other"),
])
def test_language_id(text, lang):
    assert detect_language(text) == lang


def test_chinese_prose_gets_length_rules_not_english_word_rules():
    zh = "河流缓慢地穿过小镇，农民把粮食运到磨坊，商人在码头旁建造仓库。" * 3
    assert quality_reason(zh, "commonsense", CFG, language="zh") is None
    assert quality_reason(zh[:20], "commonsense", CFG, language="zh") == "too_short"


def test_filter_stats_report_docs_chars_and_estimated_tokens():
    stats = FilterStats()
    stats.saw("commonsense", 400)
    stats.saw("code", 300)
    stats.remove("quality", "too_short", "commonsense", 400)
    stats.remove("dedup", "exact", "code", 300)
    d = stats.to_dict({"commonsense": 4.0, "code": 3.0})
    assert d["quality"]["removed_docs"] == 1
    assert d["quality"]["reasons"]["too_short"] == {"docs": 1, "chars": 400, "tokens_est": 100,
                                                   "by_domain": {"commonsense": 1}}
    assert d["dedup"]["removed_tokens_est"] == 100
    assert d["input"]["code"] == {"docs": 1, "chars": 300}
    assert stats.removed_docs() == 2 and stats.removed_docs("dedup") == 1
