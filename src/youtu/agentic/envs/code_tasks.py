"""Python function task families for the code environment: spec, reference, real bugs, inputs.

Each `Family` has a reference implementation, a few buggy variants of the kind people really
write (off-by-one, wrong initial value, lost order, missing flush of the last group, unsorted
input, ...) with a one-line explanation, and an input generator. The code environment computes
expected outputs by running the reference in the host (it is our code), and keeps only bugs
that the visible tests actually catch, so a controlled mistake always produces an observed
failure.
"""

from __future__ import annotations

import random
import string
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    fn: str
    signature: str
    doc: str
    reference: str
    bugs: tuple[tuple[str, str], ...]
    """(source, why it is wrong)."""
    inputs: Callable[[random.Random], tuple]
    edge: tuple[tuple, ...] = ()
    """Inputs always tested (the edge cases the bugs trip on)."""


def _src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 40) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


FAMILIES: list[Family] = [
    Family(
        "sum_of_multiples", "sum_of_multiples", "def sum_of_multiples(n: int, k: int) -> int:",
        "Sum of the positive integers below n that are multiples of k.",
        _src("""
            def sum_of_multiples(n, k):
                return sum(i for i in range(1, n) if i % k == 0)
        """),
        ((_src("""
            def sum_of_multiples(n, k):
                return sum(i for i in range(1, n + 1) if i % k == 0)
        """), "range(1, n + 1) also counts n itself, but the spec says strictly below n"),),
        lambda r: (r.randint(1, 60), r.randint(1, 9)), ((10, 5), (12, 3), (1, 1))),
    Family(
        "running_max", "running_max", "def running_max(xs: list[int]) -> list[int]:",
        "Element i of the result is max(xs[:i + 1]).",
        _src("""
            def running_max(xs):
                out = []
                for x in xs:
                    out.append(x if not out else max(out[-1], x))
                return out
        """),
        ((_src("""
            def running_max(xs):
                out, best = [], 0
                for x in xs:
                    best = max(best, x)
                    out.append(best)
                return out
        """), "starting the maximum at 0 is wrong for lists of negative numbers"),),
        lambda r: (_ints(r, r.randint(0, 8)),), (([-5, -2, -9],), ([],), ([3, 1, 4, 1, 5],))),
    Family(
        "rle_encode", "rle_encode", "def rle_encode(s: str) -> str:",
        "Run-length encode: 'aaabcc' -> 'a3b1c2'.",
        _src("""
            def rle_encode(s):
                out, i = [], 0
                while i < len(s):
                    j = i
                    while j < len(s) and s[j] == s[i]:
                        j += 1
                    out.append(f"{s[i]}{j - i}")
                    i = j
                return "".join(out)
        """),
        ((_src("""
            def rle_encode(s):
                out, prev, count = [], None, 0
                for ch in s:
                    if ch == prev:
                        count += 1
                    else:
                        if prev is not None:
                            out.append(f"{prev}{count}")
                        prev, count = ch, 1
                return "".join(out)
        """), "the last run is never written out after the loop"),),
        lambda r: ("".join(r.choice("aab") * r.randint(1, 3) for _ in range(r.randint(0, 5))),),
        (("aaabcc",), ("",), ("z",))),
    Family(
        "is_balanced", "is_balanced", "def is_balanced(s: str) -> bool:",
        "True when the brackets ()[]{} in s are balanced and properly nested.",
        _src("""
            def is_balanced(s):
                pairs, stack = {")": "(", "]": "[", "}": "{"}, []
                for ch in s:
                    if ch in "([{":
                        stack.append(ch)
                    elif ch in pairs:
                        if not stack or stack.pop() != pairs[ch]:
                            return False
                return not stack
        """),
        ((_src("""
            def is_balanced(s):
                return all(s.count(a) == s.count(b) for a, b in ("()", "[]", "{}"))
        """), "counting brackets ignores their order, so ')(' or '([)]' pass"),),
        lambda r: ("".join(r.choice("()[]{}x") for _ in range(r.randint(0, 8))),),
        ((")(",), ("([)]",), ("{[()]}",), ("",))),
    Family(
        "second_largest", "second_largest", "def second_largest(xs: list[int]) -> int | None:",
        "The second largest DISTINCT value of xs, or None if there is none.",
        _src("""
            def second_largest(xs):
                values = sorted(set(xs))
                return values[-2] if len(values) >= 2 else None
        """),
        ((_src("""
            def second_largest(xs):
                values = sorted(xs)
                return values[-2] if len(values) >= 2 else None
        """), "duplicates of the maximum must be removed first (distinct values)"),),
        lambda r: (_ints(r, r.randint(0, 7), 0, 9),), (([5, 5, 3],), ([7],), ([2, 9, 4],))),
    Family(
        "caesar", "caesar", "def caesar(s: str, k: int) -> str:",
        "Shift letters by k places in the alphabet (wrapping, keeping case); others stay.",
        _src("""
            def caesar(s, k):
                out = []
                for ch in s:
                    if ch.isalpha() and ch.isascii():
                        base = ord("a") if ch.islower() else ord("A")
                        out.append(chr(base + (ord(ch) - base + k) % 26))
                    else:
                        out.append(ch)
                return "".join(out)
        """),
        ((_src("""
            def caesar(s, k):
                return "".join(chr(ord(ch) + k) if ch.isalpha() else ch for ch in s)
        """), "letters past 'z' must wrap around to 'a' (mod 26)"),),
        lambda r: ("".join(r.choice(string.ascii_letters + " ,!") for _ in range(r.randint(0, 10))),
                   r.randint(1, 25)), (("xyz", 3), ("Hello, World!", 13))),
    Family(
        "merge_intervals", "merge_intervals",
        "def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:",
        "Merge overlapping [start, end] intervals (touching ones too); return them sorted.",
        _src("""
            def merge_intervals(intervals):
                out = []
                for start, end in sorted(intervals):
                    if out and start <= out[-1][1]:
                        out[-1][1] = max(out[-1][1], end)
                    else:
                        out.append([start, end])
                return out
        """),
        ((_src("""
            def merge_intervals(intervals):
                out = []
                for start, end in intervals:
                    if out and start <= out[-1][1]:
                        out[-1][1] = max(out[-1][1], end)
                    else:
                        out.append([start, end])
                return out
        """), "the intervals must be sorted by start before merging"),),
        lambda r: ([sorted([r.randint(0, 20), r.randint(0, 20)]) for _ in range(r.randint(0, 5))],),
        (([[5, 8], [1, 3], [2, 4]],), ([[1, 2], [2, 3]],))),
    Family(
        "digital_root", "digital_root", "def digital_root(n: int) -> int:",
        "Repeatedly sum the decimal digits of n >= 0 until one digit remains.",
        _src("""
            def digital_root(n):
                while n >= 10:
                    n = sum(int(d) for d in str(n))
                return n
        """),
        ((_src("""
            def digital_root(n):
                return sum(int(d) for d in str(n))
        """), "one pass of digit summing can leave two digits; repeat until one remains"),),
        lambda r: (r.randint(0, 10**6),), ((99,), (0,), (7,))),
    Family(
        "flatten", "flatten", "def flatten(nested: list) -> list:",
        "Flatten arbitrarily nested lists into one list, keeping order.",
        _src("""
            def flatten(nested):
                out = []
                for item in nested:
                    if isinstance(item, list):
                        out.extend(flatten(item))
                    else:
                        out.append(item)
                return out
        """),
        ((_src("""
            def flatten(nested):
                out = []
                for item in nested:
                    if isinstance(item, list):
                        out.extend(item)
                    else:
                        out.append(item)
                return out
        """), "nested lists deeper than one level must be flattened recursively"),),
        lambda r: ([r.randint(0, 9), [r.randint(0, 9), [r.randint(0, 9)]], []][:r.randint(1, 3)],),
        (([1, [2, [3, [4]]]],), ([],))),
    Family(
        "chunk", "chunk", "def chunk(xs: list, n: int) -> list[list]:",
        "Split xs into consecutive chunks of size n; the last chunk may be shorter.",
        _src("""
            def chunk(xs, n):
                return [xs[i:i + n] for i in range(0, len(xs), n)]
        """),
        ((_src("""
            def chunk(xs, n):
                return [xs[i:i + n] for i in range(0, len(xs) - n + 1, n)]
        """), "the final, shorter chunk is dropped"),),
        lambda r: (_ints(r, r.randint(0, 9), 0, 9), r.randint(1, 4)), (([1, 2, 3, 4, 5], 2),)),
    Family(
        "dedupe", "dedupe", "def dedupe(xs: list) -> list:",
        "Remove duplicates, keeping the first occurrence of each value in its original order.",
        _src("""
            def dedupe(xs):
                seen, out = set(), []
                for x in xs:
                    if x not in seen:
                        seen.add(x)
                        out.append(x)
                return out
        """),
        ((_src("""
            def dedupe(xs):
                return sorted(set(xs))
        """), "a set loses the original order (sorting does not restore it)"),),
        lambda r: (_ints(r, r.randint(0, 8), 0, 6),), (([3, 1, 3, 2, 1],), ([],))),
    Family(
        "count_vowels", "count_vowels", "def count_vowels(s: str) -> int:",
        "Number of vowels (a, e, i, o, u, either case) in s.",
        _src("""
            def count_vowels(s):
                return sum(ch in "aeiouAEIOU" for ch in s)
        """),
        ((_src("""
            def count_vowels(s):
                return sum(ch in "aeiou" for ch in s)
        """), "upper-case vowels must count too"),),
        lambda r: ("".join(r.choice("abcdeEIOxyU ") for _ in range(r.randint(0, 12))),),
        (("AEIOU aeiou",), ("",))),
    Family(
        "binary_search", "binary_search", "def binary_search(xs: list[int], target: int) -> int:",
        "Index of target in the sorted list xs, or -1 if it is absent.",
        _src("""
            def binary_search(xs, target):
                lo, hi = 0, len(xs) - 1
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if xs[mid] == target:
                        return mid
                    if xs[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid - 1
                return -1
        """),
        ((_src("""
            def binary_search(xs, target):
                lo, hi = 0, len(xs) - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if xs[mid] == target:
                        return mid
                    if xs[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid - 1
                return -1
        """), "with `lo < hi` the last remaining candidate is never compared"),),
        lambda r: (sorted(set(_ints(r, r.randint(0, 8), 0, 30))), r.randint(0, 30)),
        (([1, 3, 5, 7], 7), ([2], 2), ([], 4), ([1, 3], 2))),
]


def call_repr(fn: str, args: tuple[Any, ...]) -> str:
    return f"{fn}({', '.join(repr(a) for a in args)})"
