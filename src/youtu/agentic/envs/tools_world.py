"""Real behaviour behind the tools environment: a company database of realistic size, time zones
from the IANA database (zoneinfo), and the task recipes that use them.

    db = episode_db(seed)                       # company tables (cached per 100 seeds) + shop
    convert_time("2024-03-10 09:30", "America/New_York", "Asia/Tokyo")   # '2024-03-10 23:30 JST'
    recipe = REAL_RECIPES["parallel"][0](rng, level=2)

The database has eight tables: departments, employees (with managers), customers, suppliers,
products, orders (the shop's), sales and shipments: ~1,900 rows, the same for 100 consecutive
seeds (built once per process and copied per episode with SQLite's backup API, ~0.3 ms), with
prices and stock drawn per seed. Time conversions use the host's tz database through `zoneinfo`
(daylight saving included: New York is UTC-5 in January and UTC-4 in July).

A recipe is the prompt, groups of calls run in order (the calls of one group are independent:
one parallel turn; a later group may use earlier results), the answer as a function of the
executed steps, and extra meta. Recipes here take the difficulty: harder means more joins, more
calls per turn, or a longer chain.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from youtu.agentic.trajectory import Step

Calls = list[tuple[str, dict[str, Any]]]

CITY_ZONES = {
    "New York": "America/New_York", "Los Angeles": "America/Los_Angeles",
    "Chicago": "America/Chicago", "Mexico City": "America/Mexico_City",
    "Sao Paulo": "America/Sao_Paulo", "Santiago": "America/Santiago",
    "St. John's": "America/St_Johns", "Honolulu": "Pacific/Honolulu",
    "London": "Europe/London", "Lisbon": "Europe/Lisbon", "Berlin": "Europe/Berlin",
    "Istanbul": "Europe/Istanbul", "Moscow": "Europe/Moscow", "Reykjavik": "Atlantic/Reykjavik",
    "Cairo": "Africa/Cairo", "Johannesburg": "Africa/Johannesburg", "Nairobi": "Africa/Nairobi",
    "Tehran": "Asia/Tehran", "Dubai": "Asia/Dubai", "Kolkata": "Asia/Kolkata",
    "Kathmandu": "Asia/Kathmandu", "Bangkok": "Asia/Bangkok", "Shanghai": "Asia/Shanghai",
    "Seoul": "Asia/Seoul", "Tokyo": "Asia/Tokyo", "Adelaide": "Australia/Adelaide",
    "Sydney": "Australia/Sydney", "Auckland": "Pacific/Auckland",
}
"""Cities and their IANA zones (half- and quarter-hour offsets and both hemispheres' DST)."""

_FIRST = ["Amara", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jia",
          "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
          "Uma", "Viktor", "Wen", "Yara", "Zoltan"]
_LAST = ["Okafor", "Silva", "Nakamura", "Kowalski", "Haddad", "Johansson", "Patel", "Moreau",
         "Novak", "Garcia", "Kim", "Ivanova", "Mensah", "Rossi", "Fischer", "Dubois", "Tanaka",
         "Costa", "Larsen", "Ahmed"]
_COUNTRIES = {"Germany": ["Berlin", "Hamburg", "Munich"], "Japan": ["Tokyo", "Osaka", "Nagoya"],
              "Brazil": ["Sao Paulo", "Recife", "Curitiba"], "Kenya": ["Nairobi", "Mombasa"],
              "Canada": ["Toronto", "Montreal", "Calgary"], "India": ["Kolkata", "Pune", "Delhi"],
              "France": ["Lyon", "Paris", "Lille"], "Mexico": ["Monterrey", "Puebla"]}
_DEPARTMENTS = [("Sales", "Berlin"), ("Logistics", "Hamburg"), ("Support", "Pune"),
                ("Engineering", "Toronto"), ("Finance", "Paris"), ("Marketing", "Tokyo")]
_CARRIERS = ["DHL", "UPS", "FedEx", "DPD", "Yamato", "Correios"]
_STATUSES = ["delivered", "shipped", "pending", "cancelled", "returned"]
PRODUCTS = [  # (name, category); the first 12 are the shop's original catalogue
    ("hammer", "tools"), ("drill", "tools"), ("saw", "tools"), ("wrench", "tools"),
    ("apple", "food"), ("bread", "food"), ("cheese", "food"), ("coffee", "food"),
    ("notebook", "office"), ("pen", "office"), ("stapler", "office"), ("lamp", "office"),
    ("screwdriver", "tools"), ("tape measure", "tools"), ("chisel", "tools"), ("pliers", "tools"),
    ("level", "tools"), ("sander", "tools"), ("olive oil", "food"), ("rice", "food"),
    ("honey", "food"), ("green tea", "food"), ("pasta", "food"), ("chocolate", "food"),
    ("binder", "office"), ("desk chair", "office"), ("whiteboard", "office"), ("toner", "office"),
    ("envelopes", "office"), ("monitor arm", "office"), ("garden hose", "garden"),
    ("rake", "garden"), ("seed mix", "garden"), ("planter", "garden"), ("shears", "garden"),
    ("wheelbarrow", "garden"), ("kettle", "kitchen"), ("skillet", "kitchen"),
    ("chef knife", "kitchen"), ("cutting board", "kitchen"), ("blender", "kitchen"),
    ("teapot", "kitchen"), ("mixing bowl", "kitchen"), ("grater", "kitchen"),
    ("ladle", "kitchen"), ("whisk", "kitchen"), ("trowel", "garden"), ("lantern", "garden")]
CATEGORIES = sorted({c for _, c in PRODUCTS})
SCHEMA = ("departments(id, name, city), employees(id, name, department_id, manager_id, "
          "hire_date, salary), customers(id, name, city, country, signup_date), "
          "suppliers(id, name, country), products(id, name, category, price, stock), "
          "orders(id, product_id, quantity, day), sales(id, customer_id, employee_id, "
          "product_id, sale_date, quantity, unit_price), shipments(sale_id, shipped_date, "
          "carrier, weight_kg)")
"""The schema as the sql_query tool describes it."""
DB_SPAN = 100
"""Consecutive seeds sharing one company database (its tables are built once per process)."""


def _day(rng: random.Random, start: dt.date, span: int) -> str:
    return (start + dt.timedelta(days=rng.randint(0, span))).isoformat()


@functools.lru_cache(maxsize=4)
def _company(db_id: int) -> sqlite3.Connection:
    rng = random.Random(f"company/{db_id}")
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(
        "CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT, city TEXT);"
        "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department_id INTEGER, "
        "manager_id INTEGER, hire_date TEXT, salary INTEGER);"
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, country TEXT, "
        "signup_date TEXT);"
        "CREATE TABLE suppliers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);"
        "CREATE TABLE sales (id INTEGER PRIMARY KEY, customer_id INTEGER, employee_id INTEGER, "
        "product_id INTEGER, sale_date TEXT, quantity INTEGER, unit_price INTEGER);"
        "CREATE TABLE shipments (sale_id INTEGER PRIMARY KEY, shipped_date TEXT, carrier TEXT, "
        "weight_kg REAL);")
    db.executemany("INSERT INTO departments VALUES (?, ?, ?)",
                   [(i + 1, n, c) for i, (n, c) in enumerate(_DEPARTMENTS)])
    names = rng.sample([f"{a} {b}" for a in _FIRST for b in _LAST], 40 + 160)
    emps = []
    for i in range(40):
        dept = 1 + i % len(_DEPARTMENTS)
        manager = None if i < len(_DEPARTMENTS) else 1 + (dept - 1)  # department heads: 1..6
        emps.append((i + 1, names[i], dept, manager, _day(rng, dt.date(2012, 1, 1), 4000),
                     rng.randint(38, 140) * 1000))
    db.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)", emps)
    customers = []
    for i in range(160):
        country = rng.choice(sorted(_COUNTRIES))
        customers.append((i + 1, names[40 + i], rng.choice(_COUNTRIES[country]), country,
                          _day(rng, dt.date(2019, 1, 1), 1800)))
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customers)
    db.executemany("INSERT INTO suppliers VALUES (?, ?, ?)",
                   [(i + 1, f"{rng.choice(_LAST)} {rng.choice(['Trading', 'Supply', 'Goods'])}",
                     rng.choice(sorted(_COUNTRIES))) for i in range(15)])
    sales, ships = [], []
    for i in range(900):
        day = _day(rng, dt.date(2023, 1, 1), 700)
        sales.append((i + 1, rng.randint(1, 160), rng.randint(1, 40), rng.randint(1, len(PRODUCTS)),
                      day, rng.randint(1, 12), rng.randint(2, 250)))
        ships.append((i + 1, (dt.date.fromisoformat(day) + dt.timedelta(
            days=rng.randint(0, 9))).isoformat(), rng.choice(_CARRIERS),
            round(rng.uniform(0.2, 30), 1)))  # every sale ships: tasks ask about any sale
    db.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?)", sales)
    db.executemany("INSERT INTO shipments VALUES (?, ?, ?, ?)", ships)
    db.commit()
    return db


def episode_db(seed: int) -> sqlite3.Connection:
    """A fresh in-memory database for one episode: the company tables of `seed // DB_SPAN`
    and the shop's products (all 48, prices and stock drawn from `seed`) and 30 orders."""
    db = sqlite3.connect(":memory:", check_same_thread=False)
    _company(seed // DB_SPAN).backup(db)
    rng = random.Random(f"shop/{seed}")
    db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, "
               "price INTEGER, stock INTEGER)")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, product_id INTEGER, "
               "quantity INTEGER, day INTEGER)")
    db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)",
                   [(i + 1, n, c, rng.randint(2, 90), rng.randint(0, 60))
                    for i, (n, c) in enumerate(PRODUCTS)])
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                   [(i + 1, rng.randint(1, 12), rng.randint(1, 9), rng.randint(1, 7))
                    for i in range(30)])
    db.commit()
    return db


def tables(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every table's rows (the state the verifier compares)."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "ORDER BY name")]
    return {n: db.execute(f"SELECT * FROM {n} ORDER BY rowid").fetchall() for n in names}


# ---------------------------------------------------------------------------------------------
# time zones


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or ("/" not in name and name != "UTC"):
        raise ValueError(f"time zone must be an IANA name like 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def convert_time(time: Any, from_tz: Any, to_tz: Any) -> str:
    """Local time `time` ('YYYY-MM-DD HH:MM') in zone `from_tz`, as local time in `to_tz`."""
    if not isinstance(time, str):
        raise ValueError(f"time must be 'YYYY-MM-DD HH:MM', got {time!r}")
    local = dt.datetime.strptime(time.strip(), "%Y-%m-%d %H:%M").replace(tzinfo=_zone(from_tz))
    out = local.astimezone(_zone(to_tz))
    return f"{out:%Y-%m-%d %H:%M} {out.tzname()}"


def utc_offset(zone: Any, date: Any) -> str:
    """The UTC offset of `zone` at noon on `date` ('+05:45')."""
    day = dt.date.fromisoformat(str(date))
    off = dt.datetime(day.year, day.month, day.day, 12, tzinfo=_zone(zone)).utcoffset()
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# ---------------------------------------------------------------------------------------------
# recipes


@dataclass
class Group:
    plan: str
    """The plan line for this group (no values: they are not known when planning)."""
    calls: Callable[[list[Step]], Calls]


@dataclass
class Recipe:
    prompt: str
    groups: list[Group]
    answer: Callable[[list[Step]], str]
    meta: dict[str, Any] = field(default_factory=dict)


def fixed(plan: str, *calls: tuple[str, dict[str, Any]]) -> Group:
    """A group whose calls do not depend on earlier results."""
    return Group(plan, lambda steps: list(calls))


def last(steps: list[Step]) -> str:
    """The value of the last step (the last line: SQL results come under a header)."""
    return steps[-1].result.splitlines()[-1]


def _when(rng: random.Random) -> str:
    day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 730))
    return f"{day.isoformat()} {rng.randint(0, 23):02d}:{rng.choice([0, 15, 30, 45]):02d}"


def _cities(rng: random.Random, k: int) -> list[str]:
    return rng.sample(sorted(CITY_ZONES), k)


def tz_single(rng: random.Random, level: int) -> Recipe:
    a, b = _cities(rng, 2)
    when = _when(rng)
    ask = rng.choice(["A call is set for {t} {a} time. What is the local time in {b} then?",
                      "It is {t} in {a}. What time is it in {b}?",
                      "Convert {t} ({a}) to {b} local time."])
    return Recipe(ask.format(t=when, a=a, b=b),
                  [fixed(f"Convert the {a} time to {b} time", ("convert_time", {
                      "time": when, "from_tz": CITY_ZONES[a], "to_tz": CITY_ZONES[b]}))], last,
                  {"real": "zoneinfo"})


def tz_offset(rng: random.Random, level: int) -> Recipe:
    city = rng.choice(sorted(CITY_ZONES))
    day = _when(rng).split()[0]
    return Recipe(f"What is the UTC offset of {city} on {day}? Answer like +05:30.",
                  [fixed(f"Look up the UTC offset of {city}'s zone on that date",
                         ("utc_offset", {"zone": CITY_ZONES[city], "date": day}))], last,
                  {"real": "zoneinfo"})


def tz_parallel(rng: random.Random, level: int) -> Recipe:
    home, *others = _cities(rng, 1 + min(level + 1, 4))
    when = _when(rng)
    calls = [("convert_time", {"time": when, "from_tz": CITY_ZONES[home],
                               "to_tz": CITY_ZONES[c]}) for c in others]
    return Recipe(f"A meeting starts at {when} in {home}. What is the local time in "
                  f"{', '.join(others[:-1])} and {others[-1]}? Answer in that order, separated "
                  "by '; '.", [fixed("Convert the time to every city at once", *calls)],
                  lambda s: "; ".join(x.result for x in s), {"real": "zoneinfo"})


def tz_weekday(rng: random.Random, level: int) -> Recipe:
    a, b = _cities(rng, 2)
    when = _when(rng)
    return Recipe(f"A parcel is due at {when} {a} time. On which day of the week is that in {b}?",
                  [fixed(f"Convert the time to {b}", ("convert_time", {
                      "time": when, "from_tz": CITY_ZONES[a], "to_tz": CITY_ZONES[b]})),
                   Group("Look up the weekday of the converted date",
                         lambda s: [("weekday", {"date": s[-1].result.split()[0]})])], last,
                  {"real": "zoneinfo"})


def _sql_question(rng: random.Random, level: int) -> tuple[str, str]:
    country = rng.choice(sorted(_COUNTRIES))
    dept = rng.choice(_DEPARTMENTS)[0]
    cat = rng.choice(CATEGORIES)
    year = rng.choice([2023, 2024])
    carrier = rng.choice(_CARRIERS)
    if level == 1:
        return rng.choice([
            (f"SELECT COUNT(*) FROM customers WHERE country = '{country}'",
             f"How many customers are based in {country}?"),
            (f"SELECT COUNT(*) FROM shipments WHERE carrier = '{carrier}'",
             f"How many shipments went with {carrier}?"),
            (f"SELECT COUNT(*) FROM sales WHERE sale_date LIKE '{year}-%'",
             f"How many sales were made in {year}?")])
    if level == 2:
        return rng.choice([
            ("SELECT ROUND(AVG(e.salary), 2) FROM employees e JOIN departments d ON d.id = "
             f"e.department_id WHERE d.name = '{dept}'",
             f"What is the average salary in the {dept} department (rounded to 2 decimals)?"),
            ("SELECT SUM(s.quantity) FROM sales s JOIN products p ON p.id = s.product_id WHERE "
             f"p.category = '{cat}' AND s.sale_date LIKE '{year}-%'",
             f"How many units of {cat} products were sold in {year}?"),
            ("SELECT COUNT(*) FROM sales s JOIN customers c ON c.id = s.customer_id WHERE "
             f"c.country = '{country}'", f"How many sales went to customers in {country}?")])
    return rng.choice([
        ("SELECT c.name FROM sales s JOIN customers c ON c.id = s.customer_id WHERE c.country = "
         f"'{country}' GROUP BY c.id ORDER BY SUM(s.quantity * s.unit_price) DESC, c.id LIMIT 1",
         f"Which customer in {country} has spent the most in total (quantity x unit price)?"),
        ("SELECT SUM(s.quantity * s.unit_price) FROM sales s JOIN employees e ON e.id = "
         f"s.employee_id JOIN departments d ON d.id = e.department_id WHERE d.name = '{dept}' "
         f"AND s.sale_date LIKE '{year}-%'",
         f"What revenue did employees of the {dept} department bring in during {year}?"),
        ("SELECT ROUND(AVG(julianday(sh.shipped_date) - julianday(s.sale_date)), 2) FROM "
         f"shipments sh JOIN sales s ON s.id = sh.sale_id WHERE sh.carrier = '{carrier}'",
         f"On average, how many days after the sale did {carrier} shipments leave (2 "
         "decimals)?")])


def sql_single(rng: random.Random, level: int) -> Recipe:
    q, text = _sql_question(rng, level)
    return Recipe(f"{text} Use the company database.",
                  [fixed("Query the company database", ("sql_query", {"query": q}))], last,
                  {"sql": q, "real": "sqlite"})


def sql_parallel(rng: random.Random, level: int) -> Recipe:
    (q1, t1), (q2, t2) = _sql_question(rng, level), _sql_question(rng, level)
    while q2 == q1:
        q2, t2 = _sql_question(rng, level)
    return Recipe(f"Two questions about the company database: (1) {t1} (2) {t2} Answer as "
                  "'first; second'.", [fixed("Run both queries at once", ("sql_query",
                                                                          {"query": q1}),
                                             ("sql_query", {"query": q2}))],
                  lambda s: f"{s[0].result.splitlines()[-1]}; {s[1].result.splitlines()[-1]}",
                  {"sql": q1, "real": "sqlite"})


def sql_ship_days(rng: random.Random, level: int) -> Recipe:
    sale = rng.randint(1, 900)
    q = f"SELECT s.sale_date, sh.shipped_date FROM sales s JOIN shipments sh ON sh.sale_id = s.id" \
        f" WHERE s.id = {sale}"
    key = f"report:sale{sale}_days"
    groups = [fixed("Read the sale and shipment dates", ("sql_query", {"query": q})),
              Group("Count the days between them", lambda s: [("date_diff", {
                  "start": s[-1].result.splitlines()[-1].split(" | ")[0],
                  "end": s[-1].result.splitlines()[-1].split(" | ")[1]})])]
    if level >= 3:
        groups.append(Group("Store the number of days",
                            lambda s: [("kv_set", {"key": key, "value": last(s)})]))
    return Recipe(f"How many days passed between sale {sale} and its shipment?"
                  + (f" Store the number under '{key}'." if level >= 3 else ""), groups,
                  lambda s: s[1].result, {"sql": q, "real": "sqlite"})


REAL_RECIPES: dict[str, list[Callable[[random.Random, int], Recipe]]] = {
    "single": [tz_single, tz_offset, sql_single],
    "parallel": [tz_parallel, sql_parallel],
    "multi_step": [tz_weekday, sql_ship_days],
}
"""Recipes over the real content, by task kind; every one exists at every difficulty."""
