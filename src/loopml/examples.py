"""Raw example tables, generated (no download): what users bring to `loopml init --from`.

    churn(n)          customers: an ID, text categories, a signup date, a true/false column, numbers
                      with missing values, a yes/no target that depends on them (with noise)
    house_prices(n)   a regression table: numbers, a neighbourhood, a sale date, missing values
    messy(n)          duplicates, an empty and a constant column, mixed types, spaces in names,
                      a column that leaks the target; written as Latin-1 with ";" and decimal ","

`python -m loopml.examples churn churn.csv [--rows 5000]` writes one.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

PLANS = ["basic", "standard", "premium", "family"]
REGIONS = ["north", "south", "east", "west", "centre"]
PAYMENT = ["card", "transfer", "paypal", "cash"]
NEIGHBOURHOODS = ["old town", "harbour", "university", "suburbs", "hills", "station", "riverside", "market"]


def churn(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, n, p=[0.4, 0.3, 0.2, 0.1])
    region = rng.choice(REGIONS, n)
    tenure = rng.gamma(2.0, 12.0, n).round(0)
    monthly = (np.select([plan == "basic", plan == "standard", plan == "premium"], [20, 45, 80], 60)
               + rng.normal(0, 8, n)).round(2)  # fmt: skip
    tickets = rng.poisson(1.2, n)
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    payment = rng.choice(PAYMENT, n)
    paperless = rng.random(n) < 0.6
    score = (-1.35 + 0.9 * (plan == "basic") + 0.3 * paperless - 0.035 * tenure + 0.45 * tickets
             + 0.6 * (payment == "cash") + 0.4 * (region == "south")
             + 0.002 * (signup - pd.Timestamp("2022-01-01")).days.to_numpy() + rng.normal(0, 0.8, n))  # fmt: skip
    churned = np.where(score > 0, "yes", "no")
    frame = pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in range(n)], "plan": plan, "region": region,
        "tenure_months": tenure, "monthly_fee": monthly, "support_tickets": tickets,
        "signup_date": signup.strftime("%Y-%m-%d"), "payment": payment, "paperless": paperless,
        "churned": churned,
    })  # fmt: skip
    for column, share in (("monthly_fee", 0.05), ("region", 0.03), ("tenure_months", 0.04)):
        frame.loc[rng.random(n) < share, column] = None
    return frame


def house_prices(n: int = 5000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.gamma(6.0, 18.0, n).round(0) + 20
    rooms = np.clip((area / 25 + rng.normal(0, 1, n)).round(0), 1, 10)
    hood = rng.choice(NEIGHBOURHOODS, n)
    premium = {"old town": 1.4, "harbour": 1.3, "university": 1.05, "suburbs": 0.85, "hills": 1.2, "station": 0.95,
               "riverside": 1.25, "market": 1.0}  # fmt: skip
    built = rng.integers(1900, 2024, n)
    sold = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1800, n), unit="D")
    trend = 1 + 0.00012 * (sold - pd.Timestamp("2019-01-01")).days.to_numpy()
    price = (area * 3200 * np.vectorize(premium.get)(hood) * trend * (1 + 0.002 * (built - 1960).clip(0))
             + rooms * 6000 + rng.normal(0, 25_000, n)).round(-2)  # fmt: skip
    frame = pd.DataFrame({"area_m2": area, "rooms": rooms, "neighbourhood": hood, "year_built": built,
                          "sold_on": sold.strftime("%Y-%m-%d"), "garden": rng.random(n) < 0.4,
                          "price": price})  # fmt: skip
    frame.loc[rng.random(n) < 0.05, "year_built"] = None
    return frame


def messy(n: int = 2000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["Zürich", "Genève", "Malmö", "Kraków", "Besançon"], n)
    age = rng.integers(18, 80, n).astype(object)
    age[rng.random(n) < 0.02] = "unknown"  # numbers and text in one column
    income = rng.gamma(3.0, 15_000, n).round(2)
    bought = np.where(income / 45_000 + rng.normal(0, 0.7, n) > 1.0, "oui", "non")
    frame = pd.DataFrame({
        "row id": np.arange(n), "customer city": city, "age": age, "yearly income": income,
        "empty column": None, "constant column": "same", "leaky status": np.where(bought == "oui", "converted", "lost"),
        "bought": bought,
    })  # fmt: skip
    return pd.concat([frame, frame.iloc[: n // 50]], ignore_index=True)  # 2% duplicated rows


def write(frame: pd.DataFrame, path: str, legacy: bool = False) -> None:
    """CSV as users have it: UTF-8 with ",", or (legacy) Latin-1 with ";" and decimal commas."""
    if legacy:
        frame.to_csv(path, index=False, sep=";", decimal=",", encoding="latin-1")
    else:
        frame.to_csv(path, index=False)


def main(argv: list[str]) -> int:
    tables = {"churn": churn, "house_prices": house_prices, "messy": messy}
    if len(argv) < 2 or argv[0] not in tables:
        print(f"usage: python -m loopml.examples {{{','.join(tables)}}} OUT.csv [--rows N]", file=sys.stderr)
        return 2
    rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 5000
    write(tables[argv[0]](rows), argv[1], legacy=argv[0] == "messy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
