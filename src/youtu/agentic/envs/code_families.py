"""More task families for the code environment (dicts, matrices, strings, records, numbers).

    from youtu.agentic.envs.code_families import MORE_FAMILIES

Same shape as `code_tasks.FAMILIES` (reference, other strategies, bugs with kinds, inputs, edge
cases); `code_tasks.FAMILIES` includes these. Inputs are plain data (marshal-able), since the
hidden-test verifier compares marshalled values.
"""

from __future__ import annotations

import random

from youtu.agentic.envs.code_spec import Family, _ints, _src


def _word(r: random.Random, n: int = 0) -> str:
    return "".join(r.choice("abcde") for _ in range(n or r.randint(1, 4)))


def _grid(r: random.Random) -> list[list[int]]:
    cols = r.randint(1, 4)
    return [_ints(r, cols, 0, 9) for _ in range(r.randint(1, 4))]


MORE_FAMILIES: list[Family] = [
    Family(
        "word_freq", "word_freq", "def word_freq(s: str) -> dict[str, int]:",
        "Count the words of $s (split on whitespace, lower-cased): {word: count}.",
        _src("""
            def word_freq(s):
                counts = {}
                for w in s.lower().split():
                    counts[w] = counts.get(w, 0) + 1
                return counts
        """),
        ((_src("""
            def word_freq(s):
                counts = {}
                for w in s.split():
                    counts[w] = counts.get(w, 0) + 1
                return counts
        """), "words differing only in case must be counted together", "edge_case"),
         (_src("""
            def word_freq(s):
                return {w: 1 for w in s.lower().split()}
        """), "every word is counted once, however often it occurs", "wrong_logic")),
        lambda r: (" ".join(r.choice(["a", "B", "b", "cat", "Cat", "dog"])
                            for _ in range(r.randint(0, 7))),),
        (("The cat the CAT",), ("",), ("a a a",)),
        names=("count_words", "word_counts", "histogram_of_words", "tally_words"),
        docs=("A dict mapping each lower-cased whitespace-separated word of $s to how often "
              "it appears.",),
        strategies=(_src("""
            import collections


            def word_freq(s):
                return dict(collections.Counter(s.lower().split()))
        """),)),
    Family(
        "transpose", "transpose", "def transpose(matrix: list[list[int]]) -> list[list[int]]:",
        "The transpose of the rectangular $matrix (rows become columns); [] stays [].",
        _src("""
            def transpose(matrix):
                if not matrix:
                    return []
                return [[row[i] for row in matrix] for i in range(len(matrix[0]))]
        """),
        ((_src("""
            def transpose(matrix):
                return [[row[i] for row in matrix] for i in range(len(matrix))]
        """), "the result has one row per column of $matrix, not per row", "wrong_logic"),
         (_src("""
            def transpose(matrix):
                return [[row[i] for row in matrix] for i in range(len(matrix[0]))]
        """), "an empty $matrix has no matrix[0]: it must give []", "edge_case")),
        lambda r: (_grid(r),),
        (([[1, 2, 3], [4, 5, 6]],), ([],), ([[7]],)),
        names=("flip_matrix", "columns_of", "swap_axes"),
        docs=("Return $matrix with rows and columns exchanged: result[i][j] == "
              "$matrix[j][i].",),
        strategies=(_src("""
            def transpose(matrix):
                return [list(col) for col in zip(*matrix)]
        """),)),
    Family(
        "group_by_len", "group_by_len", "def group_by_len(words: list[str]) -> dict[int, list[str]]:",
        "Group $words by length: {length: [words of that length in input order]}.",
        _src("""
            def group_by_len(words):
                out = {}
                for w in words:
                    out.setdefault(len(w), []).append(w)
                return out
        """),
        ((_src("""
            def group_by_len(words):
                out = {}
                for w in words:
                    out[len(w)] = [w]
                return out
        """), "each word replaces the group instead of joining it", "wrong_logic"),
         (_src("""
            def group_by_len(words):
                out = {}
                for w in sorted(words):
                    out.setdefault(len(w), []).append(w)
                return out
        """), "sorting the words loses the input order inside each group", "wrong_logic")),
        lambda r: ([_word(r) for _ in range(r.randint(0, 6))],),
        ((["bb", "a", "ab", "c"],), ([],)),
        names=("bucket_by_length", "by_length", "length_groups"),
        docs=("Map each word length to the list of $words with that length, keeping their "
              "order.",),
        strategies=(_src("""
            import collections


            def group_by_len(words):
                out = collections.defaultdict(list)
                for w in words:
                    out[len(w)].append(w)
                return dict(out)
        """),)),
    Family(
        "moving_sum", "moving_sum", "def moving_sum(xs: list[int], k: int) -> list[int]:",
        "Sums of every window of $k consecutive elements of $xs (len($xs) - $k + 1 of them; "
        "none when $k > len($xs)).",
        _src("""
            def moving_sum(xs, k):
                return [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)]
        """),
        ((_src("""
            def moving_sum(xs, k):
                return [sum(xs[i:i + k]) for i in range(len(xs) - k)]
        """), "the last window is missing: there are len - k + 1 windows", "off_by_one"),
         (_src("""
            def moving_sum(xs, k):
                return [sum(xs[i:i + k]) for i in range(len(xs))]
        """), "windows running past the end are shorter than $k and must not be summed",
          "edge_case")),
        lambda r: (_ints(r, r.randint(0, 8), -5, 9), r.randint(1, 4)),
        (([1, 2, 3, 4], 2), ([5], 3), ([1, 1, 1], 3)),
        names=("window_sums", "sliding_sum", "rolling_total"),
        docs=("For each start i with i + $k <= len($xs), the sum $xs[i] + ... + $xs[i + $k - 1].",),
        strategies=(_src("""
            def moving_sum(xs, k):
                if k > len(xs):
                    return []
                total = sum(xs[:k])
                out = [total]
                for i in range(k, len(xs)):
                    total += xs[i] - xs[i - k]
                    out.append(total)
                return out
        """),)),
    Family(
        "parse_kv", "parse_kv", "def parse_kv(s: str) -> dict[str, str]:",
        "Parse 'a=1;b=2' into {'a': '1', 'b': '2'}: pairs split on ';', key and value on the "
        "first '=', surrounding spaces stripped, empty pairs skipped.",
        _src("""
            def parse_kv(s):
                out = {}
                for part in s.split(";"):
                    if part.strip():
                        key, _, value = part.partition("=")
                        out[key.strip()] = value.strip()
                return out
        """),
        ((_src("""
            def parse_kv(s):
                out = {}
                for part in s.split(";"):
                    key, _, value = part.partition("=")
                    out[key.strip()] = value.strip()
                return out
        """), "an empty pair (a trailing ';') must be skipped, not stored under ''", "edge_case"),
         (_src("""
            def parse_kv(s):
                out = {}
                for part in s.split(";"):
                    if part.strip():
                        key, value = part.split("=")[0], part.split("=")[-1]
                        out[key.strip()] = value.strip()
                return out
        """), "the value starts after the FIRST '=': 'x=a=b' has value 'a=b'", "wrong_logic")),
        lambda r: (";".join(f" {_word(r)} = {r.choice(['1', 'x=y', 'v', ''])}"
                            for _ in range(r.randint(0, 4))) + r.choice(["", ";"]),),
        (("a=1;b=2;",), ("x=a=b",), ("",)),
        names=("parse_pairs", "parse_settings", "kv_to_dict", "read_options"),
        docs=("Turn a ';'-separated list of key=value pairs into a dict (split at the first "
              "'='; spaces around keys and values removed; blank pairs ignored).",)),
    Family(
        "clamp_all", "clamp_all", "def clamp_all(xs: list[int], lo: int, hi: int) -> list[int]:",
        "Each value of $xs limited to the closed range [$lo, $hi].",
        _src("""
            def clamp_all(xs, lo, hi):
                return [min(max(x, lo), hi) for x in xs]
        """),
        ((_src("""
            def clamp_all(xs, lo, hi):
                return [max(min(x, lo), hi) for x in xs]
        """), "min and max are swapped, so every value ends up at $hi", "wrong_logic"),
         (_src("""
            def clamp_all(xs, lo, hi):
                return [x if lo < x < hi else lo for x in xs]
        """), "values above $hi must become $hi, and the bounds themselves are allowed",
          "edge_case")),
        lambda r: (_ints(r, r.randint(0, 7)), r.randint(-5, 5), r.randint(6, 20)),
        (([-9, 0, 5, 99], 0, 10), ([0, 10], 0, 10)),
        names=("clip", "bound_values", "limit_range", "clamp_values"),
        docs=("Return a copy of $xs where values below $lo become $lo and values above $hi "
              "become $hi.",),
        strategies=(_src("""
            def clamp_all(xs, lo, hi):
                out = []
                for x in xs:
                    if x < lo:
                        x = lo
                    elif x > hi:
                        x = hi
                    out.append(x)
                return out
        """),)),
    Family(
        "title_case", "title_case", "def title_case(s: str) -> str:",
        "Capitalise the first letter of every space-separated word of $s and lower-case the "
        "rest; keep the spaces as they are.",
        _src("""
            def title_case(s):
                return " ".join(w[:1].upper() + w[1:].lower() for w in s.split(" "))
        """),
        ((_src("""
            def title_case(s):
                return " ".join(w[:1].upper() + w[1:].lower() for w in s.split())
        """), "split() with no argument collapses runs of spaces", "edge_case"),
         (_src("""
            def title_case(s):
                return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))
        """), "the rest of each word must be lower-cased", "wrong_logic")),
        lambda r: (" ".join(r.choice(["hello", "WORLD", "pYthon", "", "a"])
                            for _ in range(r.randint(1, 5))),),
        (("hello  WORLD",), ("",), ("mIxEd case",)),
        names=("capitalize_words", "headline", "to_title", "titlecase"),
        docs=("Each word of $s (words are separated by single spaces; empty words allowed) "
              "becomes upper-case first letter + lower-case rest.",)),
    Family(
        "pascal_row", "pascal_row", "def pascal_row(n: int) -> list[int]:",
        "Row $n (0-based) of Pascal's triangle: [1], [1, 1], [1, 2, 1], ...",
        _src("""
            def pascal_row(n):
                row = [1]
                for _ in range(n):
                    row = [a + b for a, b in zip([0] + row, row + [0])]
                return row
        """),
        ((_src("""
            def pascal_row(n):
                row = [1]
                for _ in range(n - 1):
                    row = [a + b for a, b in zip([0] + row, row + [0])]
                return row
        """), "the loop builds one row too few", "off_by_one"),
         (_src("""
            def pascal_row(n):
                row = [1]
                for _ in range(n):
                    row = [a + b for a, b in zip([0] + row, row)]
                return row
        """), "zip stops at the shorter list, so the final 1 of each row is lost", "edge_case")),
        lambda r: (r.randint(0, 12),), ((0,), (4,), (1,)),
        names=("binomial_row", "pascal", "triangle_row"),
        docs=("The binomial coefficients C($n, 0) .. C($n, $n) as a list.",),
        strategies=(_src("""
            import math


            def pascal_row(n):
                return [math.comb(n, k) for k in range(n + 1)]
        """),)),
    Family(
        "top_k", "top_k", "def top_k(scores: dict[str, int], k: int) -> list[str]:",
        "The $k keys of $scores with the highest values, highest first; ties broken by key "
        "in alphabetical order.",
        _src("""
            def top_k(scores, k):
                return sorted(scores, key=lambda key: (-scores[key], key))[:k]
        """),
        ((_src("""
            def top_k(scores, k):
                return sorted(scores, key=lambda key: scores[key], reverse=True)[:k]
        """), "ties must be broken by the key, alphabetically", "edge_case"),
         (_src("""
            def top_k(scores, k):
                return sorted(scores, key=lambda key: (scores[key], key))[:k]
        """), "this takes the lowest scores, not the highest", "wrong_logic")),
        lambda r: ({_word(r, 2): r.randint(0, 5) for _ in range(r.randint(0, 6))},
                   r.randint(1, 4)),
        (({"b": 3, "a": 3, "c": 1}, 2), ({"x": 1, "y": 2}, 1)),
        names=("best_keys", "leaders", "highest_scoring", "rank_top"),
        docs=("Rank the keys of $scores by value (descending, then by name) and return the "
              "first $k.",),
        strategies=(_src("""
            import heapq


            def top_k(scores, k):
                return [key for _, key in heapq.nsmallest(k, ((-v, key) for key, v in scores.items()))]
        """),)),
    Family(
        "roman", "roman", "def roman(n: int) -> str:",
        "The Roman numeral of 1 <= $n <= 3999 (subtractive forms: IV, IX, XL, XC, CD, CM).",
        _src("""
            def roman(n):
                table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
                         (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"),
                         (4, "IV"), (1, "I")]
                out = []
                for value, sym in table:
                    while n >= value:
                        out.append(sym)
                        n -= value
                return "".join(out)
        """),
        ((_src("""
            def roman(n):
                table = [(1000, "M"), (500, "D"), (100, "C"), (50, "L"), (10, "X"), (5, "V"),
                         (1, "I")]
                out = []
                for value, sym in table:
                    while n >= value:
                        out.append(sym)
                        n -= value
                return "".join(out)
        """), "without the subtractive pairs 4 comes out as IIII", "edge_case"),
         (_src("""
            def roman(n):
                table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
                         (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"),
                         (4, "IV"), (1, "I")]
                out = []
                for value, sym in table:
                    if n >= value:
                        out.append(sym)
                        n -= value
                return "".join(out)
        """), "`if` uses each symbol at most once; it must repeat (`while`)", "wrong_logic")),
        lambda r: (r.randint(1, 3999),), ((3,), (1994,), (4,)),
        names=("to_roman", "roman_numeral", "int_to_roman"),
        docs=("Write $n (1 to 3999) in Roman numerals, e.g. 1994 -> 'MCMXCIV'.",)),
    Family(
        "is_anagram", "is_anagram", "def is_anagram(a: str, b: str) -> bool:",
        "True when $a and $b use the same letters the same number of times, ignoring case "
        "and spaces.",
        _src("""
            def is_anagram(a, b):
                def norm(s):
                    return sorted(s.replace(" ", "").lower())
                return norm(a) == norm(b)
        """),
        ((_src("""
            def is_anagram(a, b):
                return set(a.replace(" ", "").lower()) == set(b.replace(" ", "").lower())
        """), "comparing sets ignores how often each letter occurs", "wrong_logic"),
         (_src("""
            def is_anagram(a, b):
                return sorted(a.lower()) == sorted(b.lower())
        """), "spaces must be ignored", "edge_case")),
        lambda r: ((w := _word(r, 4)), "".join(r.sample(w, len(w))) if r.random() < 0.5
                   else _word(r, 4)),
        (("aab", "abb"), ("Dormitory", "dirty room"), ("", "")),
        names=("anagrams", "same_letters", "is_permutation_of"),
        docs=("Whether $b is a rearrangement of $a (case-insensitive; spaces do not count).",),
        strategies=(_src("""
            import collections


            def is_anagram(a, b):
                return (collections.Counter(a.replace(" ", "").lower())
                        == collections.Counter(b.replace(" ", "").lower()))
        """),)),
    Family(
        "max_profit", "max_profit", "def max_profit(prices: list[int]) -> int:",
        "The best profit of one buy followed by a later sell in $prices (0 if none is "
        "positive).",
        _src("""
            def max_profit(prices):
                best, low = 0, None
                for p in prices:
                    if low is None or p < low:
                        low = p
                    best = max(best, p - low)
                return best
        """),
        ((_src("""
            def max_profit(prices):
                return max(prices) - min(prices) if prices else 0
        """), "the sell must come after the buy; max - min ignores the order", "wrong_logic"),
         (_src("""
            def max_profit(prices):
                return max((b - a for a, b in zip(prices, prices[1:])), default=0)
        """), "only adjacent days are compared; the buy and sell may be far apart",
          "wrong_logic")),
        lambda r: (_ints(r, r.randint(0, 8), 1, 20),), (([7, 1, 5, 3, 6, 4],), ([9, 1],), ([],)),
        names=("best_trade", "stock_profit", "max_gain"),
        docs=("max($prices[j] - $prices[i]) over i < j, or 0 when no pair gains.",),
        strategies=(_src("""
            def max_profit(prices):
                best = 0
                for i in range(len(prices)):
                    for j in range(i + 1, len(prices)):
                        best = max(best, prices[j] - prices[i])
                return best
        """),)),
    Family(
        "spiral", "spiral", "def spiral(matrix: list[list[int]]) -> list[int]:",
        "The elements of $matrix in clockwise spiral order from the top-left.",
        _src("""
            def spiral(matrix):
                out, grid = [], [list(row) for row in matrix]
                while grid:
                    out.extend(grid.pop(0))
                    grid = [list(row) for row in zip(*grid)][::-1]
                return out
        """),
        ((_src("""
            def spiral(matrix):
                return [x for row in matrix for x in row]
        """), "this reads row by row, not in a spiral", "wrong_logic"),
         (_src("""
            def spiral(matrix):
                out, grid = [], [list(row) for row in matrix]
                while grid:
                    out.extend(grid.pop(0))
                    grid = [list(row) for row in zip(*grid)]
                return out
        """), "after taking the top row the rest must be rotated counter-clockwise "
          "(reverse the transposed rows)", "wrong_logic")),
        lambda r: (_grid(r),),
        (([[1, 2, 3], [4, 5, 6], [7, 8, 9]],), ([],), ([[1, 2], [3, 4]],)),
        names=("spiral_order", "clockwise", "snail"),
        docs=("Walk $matrix clockwise from its top-left corner, ring by ring, and return the "
              "values met.",)),
    Family(
        "compact_ranges", "compact_ranges", "def compact_ranges(xs: list[int]) -> str:",
        "Describe the sorted distinct $xs as ranges: [1, 2, 3, 5] -> '1-3,5'.",
        _src("""
            def compact_ranges(xs):
                out, i = [], 0
                while i < len(xs):
                    j = i
                    while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
                        j += 1
                    out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
                    i = j + 1
                return ",".join(out)
        """),
        ((_src("""
            def compact_ranges(xs):
                out, i = [], 0
                while i < len(xs):
                    j = i
                    while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
                        j += 1
                    out.append(f"{xs[i]}-{xs[j]}")
                    i = j + 1
                return ",".join(out)
        """), "a single number must be written alone, not as '5-5'", "edge_case"),
         (_src("""
            def compact_ranges(xs):
                out, i = [], 0
                while i < len(xs) - 1:
                    j = i
                    while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
                        j += 1
                    out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
                    i = j + 1
                return ",".join(out)
        """), "`i < len - 1` drops a trailing single number", "off_by_one")),
        lambda r: (sorted(set(_ints(r, r.randint(0, 8), 0, 15))),),
        (([1, 2, 3, 5],), ([4],), ([1, 3, 4],), ([],)),
        names=("summarize_ranges", "format_ranges", "collapse_runs"),
        docs=("Join runs of consecutive integers of $xs as 'a-b' and lone numbers as 'a', "
              "comma-separated.",)),
    Family(
        "snake_case", "snake_case", "def snake_case(s: str) -> str:",
        "Convert camelCase or PascalCase $s to snake_case ('parseHTTPResponse' is not "
        "tested; 'fooBarBaz' -> 'foo_bar_baz').",
        _src("""
            def snake_case(s):
                out = []
                for i, ch in enumerate(s):
                    if ch.isupper() and i > 0:
                        out.append("_")
                    out.append(ch.lower())
                return "".join(out)
        """),
        ((_src("""
            def snake_case(s):
                out = []
                for ch in s:
                    if ch.isupper():
                        out.append("_")
                    out.append(ch.lower())
                return "".join(out)
        """), "a leading capital must not produce a leading underscore", "edge_case"),
         (_src("""
            def snake_case(s):
                out = []
                for i, ch in enumerate(s):
                    if ch.isupper() and i > 0:
                        out.append("_")
                    out.append(ch)
                return "".join(out)
        """), "the capitals must be lower-cased too", "wrong_logic")),
        lambda r: ("".join(r.choice([w, w.capitalize()]) for w in
                           (r.choice(["get", "user", "id", "max", "value", "x"])
                            for _ in range(r.randint(1, 4)))),),
        (("FooBar",), ("fooBarBaz",), ("",)),
        names=("to_snake", "camel_to_snake", "underscore_name"),
        docs=("Lower-case $s and put '_' before every capital letter except a leading one.",),
        strategies=(_src("""
            import re


            def snake_case(s):
                return re.sub(r"(?<!^)(?=[A-Z])", "_", s).lower()
        """),)),
]
