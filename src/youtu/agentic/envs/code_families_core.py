"""The first task families of the code environment: lists, strings and numbers.

    from youtu.agentic.envs.code_families_core import CORE_FAMILIES

Same shape as `code_families.MORE_FAMILIES`; `code_tasks.FAMILIES` holds both.
"""

from __future__ import annotations

import string

from youtu.agentic.envs.code_spec import Family, _ints, _src

CORE_FAMILIES: list[Family] = [
    Family(
        "sum_of_multiples", "sum_of_multiples", "def sum_of_multiples(n: int, k: int) -> int:",
        "Sum of the positive integers below $n that are multiples of $k.",
        _src("""
            def sum_of_multiples(n, k):
                return sum(i for i in range(1, n) if i % k == 0)
        """),
        ((_src("""
            def sum_of_multiples(n, k):
                return sum(i for i in range(1, n + 1) if i % k == 0)
        """), "range(1, $n + 1) also counts $n itself, but the spec says strictly below $n",
          "off_by_one"),
         (_src("""
            def sum_of_multiples(n, k):
                return sum(range(k, n, k)) + (n if n % k == 0 else 0)
        """), "$n itself is added when it is a multiple of $k", "edge_case")),
        lambda r: (r.randint(1, 60), r.randint(1, 9)), ((10, 5), (12, 3), (1, 1)),
        names=("multiples_sum", "sum_multiples_below", "total_of_multiples"),
        docs=("Add up every multiple of $k in the range 1 .. $n - 1.",
              "Return the sum of all i with 0 < i < $n and i divisible by $k."),
        strategies=(_src("""
            def sum_of_multiples(n, k):
                return sum(range(k, n, k))
        """), _src("""
            def sum_of_multiples(n, k):
                total = 0
                for i in range(k, n, k):
                    total += i
                return total
        """))),
    Family(
        "running_max", "running_max", "def running_max(xs: list[int]) -> list[int]:",
        "Element i of the result is max($xs[:i + 1]).",
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
        """), "starting the maximum at 0 is wrong for lists of negative numbers", "edge_case"),
         (_src("""
            def running_max(xs):
                return [max(xs[:i]) for i in range(1, len(xs))]
        """), "the prefixes stop one short: the first element is lost", "off_by_one")),
        lambda r: (_ints(r, r.randint(0, 8)),), (([-5, -2, -9],), ([],), ([3, 1, 4, 1, 5],)),
        names=("prefix_max", "cumulative_max", "max_so_far"),
        docs=("Return the running maximum of $xs: position i holds the largest of the first "
              "i + 1 values.", "Prefix maxima of $xs, same length as $xs."),
        strategies=(_src("""
            def running_max(xs):
                return [max(xs[:i + 1]) for i in range(len(xs))]
        """), _src("""
            import itertools


            def running_max(xs):
                return list(itertools.accumulate(xs, max))
        """))),
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
        """), "the last run is never written out after the loop", "edge_case"),
         (_src("""
            def rle_encode(s):
                return "".join(f"{ch}{s.count(ch)}" for ch in dict.fromkeys(s))
        """), "counting each letter in the whole string merges separate runs", "wrong_logic")),
        lambda r: ("".join(r.choice("aab") * r.randint(1, 3) for _ in range(r.randint(0, 5))),),
        (("aaabcc",), ("aba",), ("",), ("z",)),
        names=("run_length_encode", "rle", "compress_runs"),
        docs=("Encode $s as letter+count for every run of equal letters ('aaabcc' gives "
              "'a3b1c2').", "Run-length encoding of $s: each maximal run becomes the "
              "character followed by its length."),
        strategies=(_src("""
            import itertools


            def rle_encode(s):
                return "".join(f"{ch}{len(list(group))}" for ch, group in itertools.groupby(s))
        """),)),
    Family(
        "is_balanced", "is_balanced", "def is_balanced(s: str) -> bool:",
        "True when the brackets ()[]{} in $s are balanced and properly nested.",
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
        """), "counting brackets ignores their order, so ')(' or '([)]' pass", "wrong_logic"),
         (_src("""
            def is_balanced(s):
                pairs, stack = {")": "(", "]": "[", "}": "{"}, []
                for ch in s:
                    if ch in "([{":
                        stack.append(ch)
                    elif ch in pairs:
                        if stack and stack.pop() != pairs[ch]:
                            return False
                return not stack
        """), "a closing bracket with an empty stack must fail, not be skipped", "edge_case")),
        lambda r: ("".join(r.choice("()[]{}x") for _ in range(r.randint(0, 8))),),
        ((")(",), ("())",), ("([)]",), ("{[()]}",), ("",)),
        names=("brackets_ok", "balanced", "check_brackets", "is_well_nested"),
        docs=("Whether every bracket of $s ((), [] or {}) is closed in the right order; other "
              "characters are ignored.", "Return True iff $s has properly nested brackets."),),
    Family(
        "second_largest", "second_largest", "def second_largest(xs: list[int]) -> int | None:",
        "The second largest DISTINCT value of $xs, or None if there is none.",
        _src("""
            def second_largest(xs):
                values = sorted(set(xs))
                return values[-2] if len(values) >= 2 else None
        """),
        ((_src("""
            def second_largest(xs):
                values = sorted(xs)
                return values[-2] if len(values) >= 2 else None
        """), "duplicates of the maximum must be removed first (distinct values)", "edge_case"),
         (_src("""
            def second_largest(xs):
                values = sorted(set(xs))
                return values[1] if len(values) >= 2 else None
        """), "values[1] is the second smallest, not the second largest", "off_by_one")),
        lambda r: (_ints(r, r.randint(0, 7), 0, 9),), (([5, 5, 3],), ([7],), ([2, 9, 4],)),
        names=("runner_up", "second_max", "next_largest"),
        docs=("Return the second-highest distinct number in $xs (None with fewer than two "
              "distinct numbers).",),
        strategies=(_src("""
            def second_largest(xs):
                best = second = None
                for x in set(xs):
                    if best is None or x > best:
                        best, second = x, best
                    elif second is None or x > second:
                        second = x
                return second
        """),)),
    Family(
        "caesar", "caesar", "def caesar(s: str, k: int) -> str:",
        "Shift letters by $k places in the alphabet (wrapping, keeping case); others stay.",
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
        """), "letters past 'z' must wrap around to 'a' (mod 26)", "edge_case"),
         (_src("""
            def caesar(s, k):
                return "".join(chr((ord(ch) - 97 + k) % 26 + 97) if ch.isalpha() else ch
                               for ch in s)
        """), "upper-case letters are shifted into the lower-case alphabet", "wrong_logic")),
        lambda r: ("".join(r.choice(string.ascii_letters + " ,!") for _ in range(r.randint(0, 10))),
                   r.randint(1, 25)), (("xyz", 3), ("Hello, World!", 13)),
        names=("rotate_letters", "caesar_shift", "shift_text"),
        docs=("Caesar cipher: move each ASCII letter of $s forward by $k, wrapping z to a and "
              "Z to A; everything else is unchanged.",),
        strategies=(_src("""
            import string


            def caesar(s, k):
                low, up = string.ascii_lowercase, string.ascii_uppercase
                table = str.maketrans(low + up, low[k % 26:] + low[:k % 26] + up[k % 26:]
                                      + up[:k % 26])
                return s.translate(table)
        """),)),
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
        """), "the intervals must be sorted by start before merging", "wrong_logic"),
         (_src("""
            def merge_intervals(intervals):
                out = []
                for start, end in sorted(intervals):
                    if out and start < out[-1][1]:
                        out[-1][1] = max(out[-1][1], end)
                    else:
                        out.append([start, end])
                return out
        """), "`<` misses intervals that only touch ([1, 2] and [2, 3])", "off_by_one"),
         (_src("""
            def merge_intervals(intervals):
                out = []
                for start, end in sorted(intervals):
                    if out and start <= out[-1][1]:
                        out[-1][1] = end
                    else:
                        out.append([start, end])
                return out
        """), "a contained interval must not shrink the merged end (take the max)",
          "edge_case")),
        lambda r: ([sorted([r.randint(0, 20), r.randint(0, 20)]) for _ in range(r.randint(0, 5))],),
        (([[1, 10], [2, 3], [0, 1]],), ([[1, 2], [2, 3]],), ([[5, 8], [1, 3], [2, 4]],)),
        names=("merge_ranges", "union_intervals", "coalesce"),
        docs=("Return the union of the closed intervals in $intervals as a sorted list of "
              "disjoint [start, end] pairs (intervals sharing an endpoint merge).",)),
    Family(
        "digital_root", "digital_root", "def digital_root(n: int) -> int:",
        "Repeatedly sum the decimal digits of $n >= 0 until one digit remains.",
        _src("""
            def digital_root(n):
                while n >= 10:
                    n = sum(int(d) for d in str(n))
                return n
        """),
        ((_src("""
            def digital_root(n):
                return sum(int(d) for d in str(n))
        """), "one pass of digit summing can leave two digits; repeat until one remains",
          "wrong_logic"),
         (_src("""
            def digital_root(n):
                return n % 9
        """), "multiples of 9 (other than 0) have root 9, not 0", "edge_case")),
        lambda r: (r.randint(0, 10**6),), ((99,), (0,), (7,), (18,)),
        names=("repeated_digit_sum", "digit_root", "reduce_digits"),
        docs=("Sum the digits of $n, then the digits of that, and so on, until a single "
              "digit is left; return it.",),
        strategies=(_src("""
            def digital_root(n):
                return 0 if n == 0 else 1 + (n - 1) % 9
        """),)),
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
        """), "nested lists deeper than one level must be flattened recursively", "edge_case"),),
        lambda r: ([r.randint(0, 9), [r.randint(0, 9), [r.randint(0, 9)]], []][:r.randint(1, 3)],),
        (([1, [2, [3, [4]]]],), ([],)),
        names=("flatten_list", "deep_flatten", "unnest"),
        docs=("Return the non-list leaves of $nested, depth first, left to right.",),
        strategies=(_src("""
            def flatten(nested):
                out, stack = [], [iter(nested)]
                while stack:
                    for item in stack[-1]:
                        if isinstance(item, list):
                            stack.append(iter(item))
                            break
                        out.append(item)
                    else:
                        stack.pop()
                return out
        """),)),
    Family(
        "chunk", "chunk", "def chunk(xs: list, n: int) -> list[list]:",
        "Split $xs into consecutive chunks of size $n; the last chunk may be shorter.",
        _src("""
            def chunk(xs, n):
                return [xs[i:i + n] for i in range(0, len(xs), n)]
        """),
        ((_src("""
            def chunk(xs, n):
                return [xs[i:i + n] for i in range(0, len(xs) - n + 1, n)]
        """), "the final, shorter chunk is dropped", "edge_case"),
         (_src("""
            def chunk(xs, n):
                return [xs[i:i + n - 1] for i in range(0, len(xs), n)]
        """), "each slice ends one element early", "off_by_one")),
        lambda r: (_ints(r, r.randint(0, 9), 0, 9), r.randint(1, 4)), (([1, 2, 3, 4, 5], 2),),
        names=("batched", "split_every", "chunks", "group_by_size"),
        docs=("Cut $xs into pieces of $n consecutive elements each (the final piece may "
              "hold fewer).",),
        strategies=(_src("""
            def chunk(xs, n):
                out = []
                for x in xs:
                    if not out or len(out[-1]) == n:
                        out.append([])
                    out[-1].append(x)
                return out
        """),)),
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
        """), "a set loses the original order (sorting does not restore it)", "wrong_logic"),
         (_src("""
            def dedupe(xs):
                return [x for i, x in enumerate(xs) if x not in xs[i + 1:]]
        """), "this keeps the last occurrence of each value, not the first", "wrong_logic")),
        lambda r: (_ints(r, r.randint(0, 8), 0, 6),), (([3, 1, 3, 2, 1],), ([],)),
        names=("unique", "distinct_in_order", "drop_duplicates"),
        docs=("The values of $xs without repeats, in order of first appearance.",),
        strategies=(_src("""
            def dedupe(xs):
                return list(dict.fromkeys(xs))
        """),)),
    Family(
        "count_vowels", "count_vowels", "def count_vowels(s: str) -> int:",
        "Number of vowels (a, e, i, o, u, either case) in $s.",
        _src("""
            def count_vowels(s):
                return sum(ch in "aeiouAEIOU" for ch in s)
        """),
        ((_src("""
            def count_vowels(s):
                return sum(ch in "aeiou" for ch in s)
        """), "upper-case vowels must count too", "edge_case"),
         (_src("""
            def count_vowels(s):
                return len(set(s.lower()) & set("aeiou"))
        """), "a set counts each distinct vowel once, not every occurrence", "wrong_logic")),
        lambda r: ("".join(r.choice("abcdeEIOxyU ") for _ in range(r.randint(0, 12))),),
        (("AEIOU aeiou",), ("",)),
        names=("vowel_count", "num_vowels", "count_aeiou"),
        docs=("How many characters of $s are vowels (aeiou, upper or lower case).",),
        strategies=(_src("""
            def count_vowels(s):
                total = 0
                for ch in s.lower():
                    if ch in "aeiou":
                        total += 1
                return total
        """),)),
    Family(
        "binary_search", "binary_search", "def binary_search(xs: list[int], target: int) -> int:",
        "Index of $target in the sorted list $xs, or -1 if it is absent.",
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
        """), "with `lo < hi` the last remaining candidate is never compared", "off_by_one"),),
        lambda r: (sorted(set(_ints(r, r.randint(0, 8), 0, 30))), r.randint(0, 30)),
        (([1, 3, 5, 7], 7), ([2], 2), ([], 4), ([1, 3], 2)),
        names=("find_sorted", "bsearch", "index_of"),
        docs=("Search the ascending, duplicate-free list $xs for $target by bisection: its "
              "index, or -1 when it is not there.",),
        strategies=(_src("""
            import bisect


            def binary_search(xs, target):
                i = bisect.bisect_left(xs, target)
                return i if i < len(xs) and xs[i] == target else -1
        """),)),
]

