"""More real code for the issue-fixing environment: pure Python parsers and encoders of the
standard library (ftplib, getopt, tarfile, email.quoprimime, xml.sax.saxutils, ...),
each with a generator of valid inputs; `swe_corpus.TARGETS` adds them to its own.

    from youtu.agentic.envs.swe_targets import MORE_TARGETS
    MORE_TARGETS["ftplib"]["parse229"](random.Random(0))   # ('229- (50494)', ('::1', 21))

Why: with 87 functions of 19 modules, 1,587 swe tasks were 9.2% near-duplicates (MinHash
Jaccard >= 0.8), mostly tasks on the same function of a one- or two-function module (fnmatch,
string, bisect), whose file makes most of the episode. A function counts only where
`swe_corpus.function` can stand it alone and `inject_bug` finds a mutant that really differs;
functions whose helpers the sandbox's Python lacks are dropped by `swe.sandbox_usable`. Not
here: code whose behaviour changed between patch releases (smtplib.quoteaddr calls
email.utils.parseaddr, made stricter in 3.11.4): the expected values are the host's, the
sandbox's interpreter may be older (3.11.2 beside 3.11.7 here), and 1.3% of the swe tasks
failed their own hidden tests that way.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Inputs = Callable[[random.Random], tuple]

_TEXT = ["a", "b", "x y", "=", "&", "<", ">", "'", '"', "\t", " ", "é", "\n", ";", ":", "?",
         "#", "@", ".", "\\", "%"]


def _text(rng: random.Random, most: int = 8) -> str:
    return "".join(rng.choice(_TEXT) for _ in range(rng.randint(0, most)))


def _bytes(rng: random.Random, most: int = 12) -> bytes:
    return bytes(rng.choice([rng.randrange(256), rng.randrange(32, 127), 61, 10, 32])
                 for _ in range(rng.randint(0, most)))


def _name(rng: random.Random) -> str:
    return rng.choice(["ann", "bob", "j.doe", "x", "zoë", "o'neil", "a+b", "q"]) + \
        rng.choice(["", str(rng.randint(0, 99))])


def _iso_date(rng: random.Random) -> str:
    parts = [f"{rng.randint(1, 9999):04d}", f"{rng.randint(1, 12):02d}",
             f"{rng.randint(1, 28):02d}", f"T{rng.randint(0, 23):02d}",
             f":{rng.randint(0, 59):02d}", f":{rng.randint(0, 59):02d}"]
    keep = rng.randint(1, 6)  # year, month, ... second: the plist forms are prefixes of it
    return "-".join(parts[:min(keep, 3)]) + "".join(parts[3:keep]) + \
        rng.choice(["Z", "Z", "Z", "", "z"])


def _flags(rng: random.Random) -> bytes:
    flags = " ".join(rng.sample(["\\Seen", "\\Deleted", "\\Answered", "\\Flagged", "$Junk",
                                 "\\Draft"], rng.randint(0, 4)))
    head = rng.choice([f"{rng.randint(1, 999)} (", f"{rng.randint(1, 99)} (UID "
                       f"{rng.randint(1, 999)} ", "* ("])
    return (head + rng.choice(["FLAGS ", "FLAGS", "flags "]) + f"({flags}))").encode()


def _reply(rng: random.Random, code: str, body: str) -> str:
    return rng.choice([code, code, "500", "15"]) + rng.choice([" ", "-", ""]) + body


def _p229(rng: random.Random) -> tuple:
    port = rng.randint(0, 65535)
    body = rng.choice([f"Extended Passive Mode (|||{port}|)", f"(|||{port}|)", f"(!!!{port}!)",
                       f"({port})", f"(|||{port}|"])
    return (_reply(rng, "229", " " + body), (rng.choice(["10.0.0.1", "::1"]), 21))


def _p257(rng: random.Random) -> tuple:
    path = rng.choice(['"/home/ann"', '"/a ""b"" c"', '"/x', "no quotes", '""', '"/tmp"'])
    return (_reply(rng, "257", " " + path + rng.choice(["", " is the current directory"])),)


def _getopt(rng: random.Random) -> tuple:
    pool = ["-a", "-b", "-c", "val", "-ab", "-bval", "--", "x", "-", "--long", "--arg=1",
            "--arg", "--lo"]
    return ([rng.choice(pool) for _ in range(rng.randint(0, 5))], rng.choice(["ab:c", "a:b",
                                                                                "abc", ""]),
            rng.choice([["long", "arg="], ["long"], ["longer", "arg="], []]))


def _environ(rng: random.Random) -> tuple:
    env = {"wsgi.url_scheme": rng.choice(["http", "https"]),
           "SERVER_NAME": rng.choice(["example.com", "localhost"]),
           "SERVER_PORT": rng.choice(["80", "443", "8080"]),
           "PATH_INFO": rng.choice(["", "/", "/a/b", "//x/", "/a/./b", "/../c"]),
           "SCRIPT_NAME": rng.choice(["", "/app", "/app/"])}
    if rng.random() < 0.5:
        env["HTTP_HOST"] = rng.choice(["example.org", "h:81"])
    if rng.random() < 0.3:
        env["HTTPS"] = rng.choice(["on", "off", "1", "yes"])
    return (env,)


def _date822(rng: random.Random) -> tuple:
    day = rng.choice(["Mon, ", "", "Fri, "])
    zone = rng.choice(["-0500", "+0000", "GMT", "EST", "", "+0130", "Z"])
    date = f"{rng.randint(1, 31)} {rng.choice(['Jan', 'Feb', 'Sep', 'Dec', 'Foo'])} " \
           f"{rng.choice(['1995', '24', '2024', '99'])} {rng.randint(0, 23):02d}:" \
           f"{rng.randint(0, 59):02d}{rng.choice([':08', ''])} {zone}"
    return (day + date.strip(),)


def _http_list(rng: random.Random) -> tuple:
    parts = ["a", "b=1", '"x, y"', 'c="q\\"r"', " d ", "", "e=", '"unterminated']
    return (", ".join(rng.choice(parts) for _ in range(rng.randint(0, 4))),)


def _tar_field(rng: random.Random) -> tuple:
    return (rng.choice([b"0000644\x00", b"00000000017 ", b"  12\x00\x00", b"\x80\x00\x00\x05",
                        b"777\x00", b"\xff" * 8, bytes(8), b"1x2\x00"]),)


MORE_TARGETS: dict[str, dict[str, Inputs]] = {
    "ftplib": {"parse229": _p229, "parse257": _p257},
    "getopt": {"getopt": _getopt, "gnu_getopt": _getopt,
               "short_has_arg": lambda rng: (rng.choice("abcz"), rng.choice(["ab:c", "a:b:",
                                                                             "abc"])),
               "long_has_args": lambda rng: (rng.choice(["lo", "long", "arg", "x"]),
                                             rng.choice([["long", "arg="], ["longer"], []]))},
    "tarfile": {"nts": lambda rng: (_bytes(rng), "utf-8", rng.choice(["strict", "replace",
                                                                      "surrogateescape"])),
                "nti": _tar_field,
                "itn": lambda rng: (rng.choice([0, 7, 8 ** 7 - 1, 8 ** 7, -1, 2 ** 40, 511]),
                                    rng.choice([8, 12]), rng.choice([1, 2])),
                "stn": lambda rng: (rng.choice(["a", "name.txt", "é", ""]), rng.choice([4, 8]),
                                    "utf-8", "strict")},
    "email.quoprimime": {
        "header_check": lambda rng: (rng.randrange(256),),
        "body_check": lambda rng: (rng.randrange(256),),
        "unquote": lambda rng: ("=" + "".join(rng.choice("0123456789abcdefABCDEFxz")
                                              for _ in range(rng.randint(1, 3))),),
        "header_encode": lambda rng: (_bytes(rng), rng.choice(["iso-8859-1", "utf-8"])),
        "decode": lambda rng: ("".join(rng.choice(["a", "=41", "=\n", "=", "\n", " ", "=3d"])
                                       for _ in range(rng.randint(0, 7))),
                               rng.choice(["\n", "\r\n"])),
        "body_encode": lambda rng: ("".join(rng.choice(["abc ", "=", "é", "\n", "\t", "x" * 30])
                                            for _ in range(rng.randint(0, 6))),
                                    rng.choice([76, 20, 8]), rng.choice(["\n", "\r\n"]))},
    "email.base64mime": {"header_length": lambda rng: (_bytes(rng),),
                         "header_encode": lambda rng: (_bytes(rng), rng.choice(["utf-8",
                                                                                "iso-8859-1"])),
                         "body_encode": lambda rng: (_bytes(rng, 80), rng.choice([76, 16, 4]),
                                                     rng.choice(["\n", "\r\n"]))},
    "email._parseaddr": {"_parsedate_tz": _date822, "parsedate_tz": _date822},
    "xml.sax.saxutils": {"escape": lambda rng: (_text(rng), rng.choice([{}, {'"': "&quot;"}])),
                         "unescape": lambda rng: ("".join(rng.choice(["&lt;", "&gt;", "&amp;",
                                                                      "a", "&quot;", "&"])
                                                          for _ in range(rng.randint(0, 6))),
                                                  rng.choice([{}, {"&quot;": '"'}])),
                         "quoteattr": lambda rng: (_text(rng), {})},
    "wsgiref.util": {"guess_scheme": _environ, "shift_path_info": _environ},
    "urllib.request": {"parse_http_list": _http_list,
                       "parse_keqv_list": lambda rng: ([rng.choice(['a=1', 'b="x y"', 'c=""'])
                                                        for _ in range(rng.randint(0, 3))],),
                       "_parse_proxy": lambda rng: (
                           rng.choice(["http://", "https://", "", "file:", "ftp://"])
                           + rng.choice(["", f"{_name(rng)}:pw@", f"{_name(rng)}@"])
                           + rng.choice(["proxy.example.com", "10.0.0.1", "p", ""])
                           + rng.choice(["", f":{rng.randint(1, 65535)}"])
                           + rng.choice(["", "/", "/x"]),)},
    "difflib": {"_format_range_unified": lambda rng: tuple(sorted([rng.randint(0, 30),
                                                                    rng.randint(0, 30)])),
                "_format_range_context": lambda rng: tuple(sorted([rng.randint(0, 30),
                                                                    rng.randint(0, 30)]))},
    "plistlib": {"_date_from_string": lambda rng: (_iso_date(rng),)},
    "operator": {"indexOf": lambda rng: ([rng.randint(0, 5) for _ in range(rng.randint(0, 6))],
                                         rng.randint(0, 5)),
                 "countOf": lambda rng: ([rng.randint(0, 3) for _ in range(rng.randint(0, 6))],
                                         rng.randint(0, 3)),
                 "concat": lambda rng: tuple(rng.choice([[rng.randint(0, 9)], _text(rng, 3),
                                                         (rng.randint(0, 9),), rng.randint(0, 9)])
                                             for _ in range(2))},
    "imaplib": {"ParseFlags": lambda rng: (_flags(rng),)},
}
"""module -> function -> generator of valid positional arguments."""
