"""The tools environment's original task recipes: unit conversions, dates, the shop tables and
the key-value store, and the irrelevance requests (tools_world holds the ones over the company
database and time zones).

    recipe = LEGACY["multi_step"][2][0](random.Random(0))
    recipe = irrelevance(random.Random(0), level=2)

A recipe is the prompt, groups of calls run in order (the calls of one group are independent:
one parallel turn; a group may use the results of earlier steps), the answer as a function of
the executed steps, and extra meta (`tools_world.Recipe`).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from youtu.agentic.envs.tools import _UNIT_NAMES
from youtu.agentic.envs.tools_world import CITY_ZONES, PRODUCTS
from youtu.agentic.envs.tools_world import Group as _Group
from youtu.agentic.envs.tools_world import Recipe as _Recipe
from youtu.agentic.envs.tools_world import fixed as _fixed
from youtu.agentic.envs.tools_world import last as _last
from youtu.agentic.trajectory import Step

_PRODUCTS = PRODUCTS
_IRRELEVANT = [  # requests no offered tool can serve (templates x fillers: thousands of prompts)
    ("Write a {form} about {topic}.", {"form": ["haiku", "limerick", "short poem", "toast"],
                                       "topic": ["autumn leaves", "the sea", "coffee", "trains",
                                                 "a lost umbrella", "mountains"]}),
    ("Translate '{phrase}' into {language}.", {"phrase": ["good morning", "thank you",
                                                          "where is the station", "see you soon"],
                                               "language": ["Japanese", "French", "Swahili",
                                                            "Portuguese", "Finnish"]}),
    ("Book a table for {n} at {place} {when}.", {"n": ["two", "four", "six"],
                                                 "place": ["an Italian restaurant", "a sushi bar",
                                                           "the hotel bistro"],
                                                 "when": ["tonight", "on Friday",
                                                          "tomorrow at 8"]}),
    ("Send an email to {who} saying {msg}.", {"who": ["my manager", "the landlord", "Dana"],
                                              "msg": ["I will be late", "the report is done",
                                                      "thanks for the help"]}),
    ("What will the weather be in {city} {when}?", {"city": ["Oslo", "Lima", "Perth", "Riga"],
                                                    "when": ["tomorrow", "this weekend"]}),
    ("Play some {genre} music.", {"genre": ["relaxing", "jazz", "classical", "upbeat"]}),
    ("Remind me to {task} at {time}.", {"task": ["call mum", "water the plants", "stretch",
                                                 "take the pills", "pay the rent"],
                                        "time": ["6 pm", "noon", "9:30", "7 am", "midnight"]}),
    ("Summarise the plot of {book} in {n} sentences.", {
        "book": ["Moby-Dick", "Pride and Prejudice", "Don Quixote", "War and Peace", "Dune",
                 "The Odyssey", "Frankenstein"], "n": ["two", "three", "five"]}),
    ("Order {n} {item} from {shop} for delivery {when}.", {
        "n": ["two", "a dozen", "three"], "item": ["pizzas", "bagels", "coffees", "roses"],
        "shop": ["the corner shop", "an online store", "the bakery"],
        "when": ["today", "tomorrow morning", "on Saturday"]}),
    ("Draw a picture of {thing} in the style of {artist}.", {
        "thing": ["a lighthouse", "a cat", "a city at night", "a forest"],
        "artist": ["Monet", "Hokusai", "Van Gogh", "Klimt", "Frida Kahlo"]}),
    ("Call {who} and tell them {msg}.", {"who": ["the plumber", "my sister", "the dentist",
                                                  "the bank"],
                                         "msg": ["I'm running late", "to reschedule",
                                                 "the door code changed"]}),
    ("Who won the {event} in {year}?", {"event": ["World Cup", "Tour de France", "Eurovision",
                                                  "Nobel Prize in Physics"],
                                        "year": ["1998", "2006", "2014", "2019", "2022"]}),
    ("Recommend a {genre} film similar to {film}.", {
        "genre": ["sci-fi", "comedy", "thriller", "animated"],
        "film": ["Alien", "Amelie", "Heat", "Spirited Away", "Arrival"]}),
]
LEADS = ["", "", "", "Hi! ", "Quick one: ", "Please help: ", "For a report: ", "Can you check: ",
          "I need this: ", "Question: "]
"""Ways a user opens a request (the request itself is the recipe's)."""
TAILS = ["", "", "", " Thanks!", " Thank you.", " It's urgent.", " No rush.", " Keep it short.",
          " This is for a colleague.", " I'll wait."]
"""... and closes it."""


def _value(step: Step) -> str:
    v = step.result.splitlines()[-1]
    return "0" if v == "None" else v  # SQL SUM over no rows


def _conversion(rng: random.Random) -> tuple[str, dict[str, Any]]:
    pairs = [("mi", "km"), ("km", "mi"), ("lb", "kg"), ("kg", "lb"), ("ft", "m"), ("gal", "l"),
             ("C", "F"), ("F", "C"), ("oz", "g"), ("in", "cm"), ("week", "h"), ("nmi", "km"),
             ("acre", "ha"), ("ha", "acre"), ("ft2", "m2"), ("km2", "acre"), ("mph", "km/h"),
             ("kn", "m/s"), ("km/h", "mph"), ("psi", "kPa"), ("bar", "psi"), ("atm", "Pa"),
             ("kcal", "kJ"), ("kWh", "Btu"), ("cal", "J"), ("K", "C"), ("yd", "m")]
    a, b = rng.choice(pairs)
    value = rng.choice([1.5, 2, 3.2, 5, 7.5, 10, 12.5, 20, 26.2, 42, 100,
                        round(rng.uniform(0.5, 500), rng.choice([0, 1, 2]))])
    return (f"{value} {_UNIT_NAMES[a]} in {_UNIT_NAMES[b]}",
            {"value": value, "from_unit": a, "to_unit": b})


def _a_date(rng: random.Random) -> str:
    return (dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 900))).isoformat()


def _single_convert(rng: random.Random) -> _Recipe:
    text, args = _conversion(rng)
    return _Recipe(f"What is {text}?", [_fixed("Convert with convert_units",
                                               ("convert_units", args))],
                   _last, {"unit": args["to_unit"]})


def _single_date(rng: random.Random) -> _Recipe:
    a, b = sorted([_a_date(rng), _a_date(rng)])
    return _Recipe(f"How many days are there from {a} to {b}?",
                   [_fixed("Count the days with date_diff", ("date_diff", {"start": a, "end": b}))],
                   _last)


def _single_weekday(rng: random.Random) -> _Recipe:
    d = _a_date(rng)
    return _Recipe(f"What day of the week is {d}?",
                   [_fixed("Look up the weekday", ("weekday", {"date": d}))], _last)


def _single_sql(rng: random.Random) -> _Recipe:
    cat = rng.choice(["tools", "food", "office"])
    price = rng.randint(20, 60)
    q, text = rng.choice([
        (f"SELECT SUM(stock) FROM products WHERE category = '{cat}'",
         f"What is the total stock of all products in the '{cat}' category?"),
        (f"SELECT COUNT(*) FROM products WHERE price > {price}",
         f"How many products cost more than {price}?"),
        ("SELECT SUM(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
         f"WHERE p.category = '{cat}'",
         f"How many units of '{cat}' products were ordered in total?"),
    ])
    return _Recipe(text + " Use the shop database.",
                   [_fixed("Query the shop database", ("sql_query", {"query": q}))], _last,
                   {"sql": q})


def _single_kv(rng: random.Random) -> _Recipe:
    key = rng.choice(["user:ana:city", "budget:total", "trip:distance_mi"])
    return _Recipe(f"What value is stored under the key '{key}'?",
                   [_fixed("Read the key from the key-value store", ("kv_get", {"key": key}))],
                   _last)


def _single_calc(rng: random.Random) -> _Recipe:
    a, b, c = rng.randint(12, 99), rng.randint(2, 19), rng.randint(100, 999)
    expr = f"({c} - {a}) * {b} / 4"
    return _Recipe(f"Compute {expr} exactly.",
                   [_fixed("Evaluate with the calculator", ("calculator", {"expression": expr}))],
                   _last)


def _parallel(rng: random.Random, n: int = 2) -> _Recipe:
    convs: list[tuple[str, dict[str, Any]]] = []
    while len(convs) < n:
        t, a = _conversion(rng)
        if a not in [c[1] for c in convs]:
            convs.append((t, a))
    texts = [t for t, _ in convs]
    return _Recipe(f"{n} quick conversions: {', '.join(texts[:-1])}, and {texts[-1]}. Answer "
                   "in that order, separated by '; '.",
                   [_fixed("Run the conversions at once", *[("convert_units", a)
                                                            for _, a in convs])],
                   lambda s: "; ".join(x.result for x in s))


def _multi_weekday(rng: random.Random) -> _Recipe:
    d, n = _a_date(rng), rng.randint(10, 400)
    return _Recipe(f"What day of the week will it be {n} days after {d}?",
                   [_fixed("Add the days to the date", ("date_add", {"date": d, "days": n})),
                    _Group("Look up the weekday of the new date",
                           lambda s: [("weekday", {"date": s[-1].result})])], _last)


def _multi_store_stock(rng: random.Random) -> _Recipe:
    cat = rng.choice(["tools", "food", "office"])
    q = f"SELECT SUM(stock) FROM products WHERE category = '{cat}'"
    key = f"stock:{cat}"
    return _Recipe(f"Look up the total stock of the '{cat}' category in the shop database and "
                   f"save it in the key-value store under '{key}'. Reply with the number.",
                   [_fixed("Sum the stock of the category in the database",
                           ("sql_query", {"query": q})),
                    _Group("Store the total in the key-value store",
                           lambda s: [("kv_set", {"key": key, "value": _last(s)})])],
                   lambda s: _last(s[:1]), {"sql": q})


def _multi_convert_stored(rng: random.Random) -> _Recipe:
    src, dst, unit_a, unit_b = rng.choice([("trip:distance_mi", "trip:distance_km", "mi", "km"),
                                           ("parcel:weight_lb", "parcel:weight_kg", "lb", "kg")])
    return _Recipe(
        f"Read '{src}' from the key-value store, convert it from {_UNIT_NAMES[unit_a]} to "
        f"{_UNIT_NAMES[unit_b]}, and store the result under '{dst}'. Reply with the converted "
        "value.",
        [_fixed("Read the stored value", ("kv_get", {"key": src})),
         _Group("Convert it", lambda s: [("convert_units", {
             "value": float(_last(s)), "from_unit": unit_a, "to_unit": unit_b})]),
         _Group("Store the converted value",
                lambda s: [("kv_set", {"key": dst, "value": _last(s)})])],
        lambda s: s[1].result, {"unit": unit_b})


def _multi_restock(rng: random.Random) -> _Recipe:
    name, n = rng.choice(_PRODUCTS)[0], rng.randint(5, 40)
    update = f"UPDATE products SET stock = stock + {n} WHERE name = '{name}'"
    read = f"SELECT stock FROM products WHERE name = '{name}'"
    return _Recipe(f"We received {n} more units of '{name}'. Update its stock in the shop "
                   "database, then report the new stock.",
                   [_fixed("Add the units to the product's stock (UPDATE)",
                           ("sql_query", {"query": update})),
                    _fixed("Read the new stock back", ("sql_query", {"query": read}))], _last)


def _multi_revenue_budget(rng: random.Random) -> _Recipe:
    day = rng.randint(1, 7)
    q = ("SELECT SUM(o.quantity * p.price) FROM orders o JOIN products p ON p.id = o.product_id "
         f"WHERE o.day = {day}")
    return _Recipe(
        f"What share of the stored budget ('budget:total') is the revenue of day {day}? Get "
        "both numbers (they are independent), then compute revenue / budget exactly and store "
        "the fraction under 'report:share'. Reply with the fraction.",
        [_fixed("Get the day's revenue from the database and the budget from the store",
                ("sql_query", {"query": q}), ("kv_get", {"key": "budget:total"})),
         _Group("Divide revenue by budget with the calculator",
                lambda s: [("calculator", {"expression": f"{_value(s[0])} / {s[1].result}"})]),
         _Group("Store the fraction",
                lambda s: [("kv_set", {"key": "report:share", "value": _last(s)})])],
        lambda s: s[2].result, {"sql": q})


def irrelevance(rng: random.Random, level: int = 1) -> _Recipe:
    # harder: requests that sound like an offered tool's job but are not (no currency rates,
    # no ephemeris, no nutrition table, no schema changes)
    bank = _IRRELEVANT if level == 1 or rng.random() < 0.3 else _NEAR_IRRELEVANT
    template, fillers = rng.choice(bank)
    prompt = template.format(**{k: rng.choice(v) for k, v in fillers.items()})
    return _Recipe(prompt, [], lambda s: "none")


_NEAR_IRRELEVANT = [
    ("Convert {n} {cur} to {cur2} at today's rate.", {"n": ["20", "150", "3.5", "1000"],
                                                      "cur": ["US dollars", "euros", "yen"],
                                                      "cur2": ["pounds", "rupees", "pesos"]}),
    ("At what time does the sun set in {city} on {day}?", {"city": sorted(CITY_ZONES)[:12],
                                                           "day": ["2024-06-21", "2025-01-03"]}),
    ("How many kilocalories are there in {food}?", {"food": [
        "an apple", "a bowl of rice", "100 g of cheese", "a croissant", "a banana", "a latte",
        "two eggs", "a slice of pizza", "a cup of lentils", "an avocado"]}),
    ("Add a '{col}' column to the {table} table.", {
        "col": ["email", "discount", "notes", "phone", "rating", "vat_id", "region"],
        "table": ["customers", "products", "employees", "suppliers", "sales"]}),
    ("Create a new table for {what} in the database.", {"what": [
        "invoices", "refunds", "warehouse bins", "loyalty points", "coupons", "returns"]}),
    ("How long does it take to fly from {city} to {city2}?", {
        "city": sorted(CITY_ZONES)[12:20], "city2": sorted(CITY_ZONES)[20:]}),
    ("Which flights leave {city} for {city2} tomorrow?", {"city": ["Berlin", "Tokyo", "Lima"],
                                                          "city2": ["Oslo", "Cairo", "Seoul"]}),
    ("What is the current stock price of {co}?", {"co": [
        "a car maker", "the company", "our main supplier", "the largest airline",
        "a chip designer", "our logistics partner"]}),
    ("What is the exchange rate between the {a} and the {b} right now?", {
        "a": ["euro", "yen", "rand", "real", "rupee"], "b": ["dollar", "pound", "franc", "won"]}),
]


KINDS = ("single", "parallel", "multi_step", "irrelevance")
_SINGLE = [_single_convert, _single_date, _single_weekday, _single_sql, _single_kv, _single_calc]
_MULTI = [_multi_weekday, _multi_store_stock, _multi_convert_stored]
_MULTI_HARD = [_multi_restock, _multi_revenue_budget, _multi_convert_stored, _multi_store_stock]
LEGACY = {"single": {1: _SINGLE, 2: _SINGLE, 3: _SINGLE},
           "parallel": {k: [lambda rng, n=k + 1: _parallel(rng, n)] for k in (1, 2, 3)},
           "multi_step": {1: _MULTI, 2: _MULTI + _MULTI_HARD, 3: _MULTI_HARD}}
"""The original recipes (shop tables, key-value store, dates, units) by kind and difficulty."""
