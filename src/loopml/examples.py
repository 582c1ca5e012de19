"""Raw example tables, generated (no download): what users bring to `loopml init --from`.

    churn(n)          customers: an ID, text categories, a signup date, a true/false column, numbers
                      with missing values, a yes/no target that depends on them (with noise)
    house_prices(n)   a regression table: numbers, a neighbourhood, a sale date, missing values
    messy(n)          duplicates, an empty and a constant column, mixed types, spaces in names,
                      a column that leaks the target; written as Latin-1 with ";" and decimal ","
    tickets(n)        customer-support messages (free text) labelled billing, delivery, technical or
                      account (see `tickets` for how it is made hard); `style="reviews"` writes
                      product reviews instead: another topic and style, for text drift

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


TOPICS = {  # per label: what goes wrong (the complaint) and what a message may mention in passing
    "billing": {
        "things": ["invoice", "refund", "payment", "card", "subscription fee", "bill", "receipt", "charge"],
        "problems": [
            "I was charged twice for {thing}",
            "the {thing} shows the wrong amount",
            "my {thing} has not been credited back yet",
            "you took money for a {thing} I cancelled",
            "the {thing} is higher than the price on your website",
            "I cannot see where my {thing} went",
            "there is an extra {thing} on my statement I never agreed to",
        ],
    },
    "delivery": {
        "things": ["parcel", "package", "order", "courier", "tracking number", "shipment", "box", "delivery slot"],
        "problems": [
            "my {thing} never arrived",
            "the {thing} came three days late",
            "the {thing} was left at the wrong address",
            "the {thing} arrived damaged and wet",
            "the {thing} says delivered but nothing is here",
            "the {thing} has been stuck in the depot for a week",
            "half of my {thing} is missing",
        ],
    },
    "technical": {
        "things": ["app", "website", "update", "screen", "checkout page", "download", "sync", "notification"],
        "problems": [
            "the {thing} crashes every time I open it",
            "the {thing} freezes after the latest version",
            "the {thing} shows an error 500",
            "the {thing} will not load on my phone",
            "the {thing} keeps spinning and never finishes",
            "the {thing} logs me out and shows a blank page",
            "the {thing} has been broken since yesterday",
        ],
    },
    "account": {
        "things": [
            "password",
            "email address",
            "username",
            "profile",
            "two-factor code",
            "account",
            "login",
            "security question",
        ],
        "problems": [
            "I cannot reset my {thing}",
            "someone changed my {thing} without asking me",
            "my {thing} is locked after too many attempts",
            "I never receive the {thing} reset email",
            "I want to delete my {thing} and all my data",
            "the {thing} belongs to my old employer and I need it moved",
            "I would like to merge the {thing} with my partner's",
        ],
    },
}
ASIDES = ["the {thing} itself was fine", "I have no problem with the {thing}", "the {thing} worked as usual",
          "this is not about the {thing}", "the {thing} was sorted out last month", "my {thing} is all in order",
          "your colleague already fixed the {thing}"]  # fmt: skip
OPENERS = ["Hi,", "Hello team,", "Good morning,", "Dear support,", "Hey,", "", "", "To whom it may concern,"]
REQUESTS = ["Please help.", "Can you look into it?", "What should I do now?", "I need this fixed today.",
            "Thanks in advance.", "This is really frustrating.", "Please call me back.", ""]  # fmt: skip
REVIEWS = {  # style="reviews": product reviews with star ratings, another topic and register entirely
    "subjects": ["blender", "headphones", "novel", "tent", "coffee grinder", "running shoes", "desk lamp", "jacket"],
    "verdicts": [
        "The {thing} is sturdy and looks great on the shelf.",
        "Five stars, the {thing} exceeded my expectations.",
        "Sadly the {thing} broke after two weeks of light use.",
        "The {thing} is overpriced for what you get.",
        "I bought the {thing} as a gift and my brother loves it.",
        "Fits true to size; the {thing} is comfortable all day.",
        "The colour of the {thing} is duller than in the photos.",
    ],
}


def tickets(n: int = 2000, seed: int = 3, style: str = "support") -> pd.DataFrame:
    """Customer-support messages, `text` and `label` (billing, delivery, technical, account).

    Made so that a keyword rule is not enough: every label shares vocabulary with another (a login
    page is technical, a login you cannot reset is account), 55% of messages also mention another
    label's things in passing ("I have no problem with the invoice, but my parcel never arrived"),
    in either order; there are typos (2% of words have two letters swapped), casing noise, and 2%
    of labels are wrong, as in a real help-desk export. `style="reviews"` gives product reviews
    (label "review"): the same length range, another topic and style, for text-drift tests."""
    rng = np.random.default_rng(seed)
    labels = list(TOPICS)
    texts, out_labels = [], []
    for _ in range(n):
        if style == "reviews":
            parts = [str(rng.choice(REVIEWS["verdicts"])).format(thing=rng.choice(REVIEWS["subjects"]))
                     for _ in range(int(rng.integers(1, 3)))]  # fmt: skip
            texts.append(_noisy(" ".join(parts), rng))
            out_labels.append("review")
            continue
        label = str(rng.choice(labels))
        topic = TOPICS[label]
        complaint = str(rng.choice(topic["problems"])).format(thing=rng.choice(topic["things"]))
        clauses = [complaint]
        if rng.random() < 0.55:
            other = TOPICS[str(rng.choice([x for x in labels if x != label]))]
            aside = str(rng.choice(ASIDES)).format(thing=rng.choice(other["things"]))
            clauses = [aside, "but " + complaint] if rng.random() < 0.5 else [complaint + ", although " + aside]
        body = " ".join([str(rng.choice(OPENERS)), ", ".join(clauses) + ".", str(rng.choice(REQUESTS))]).strip()
        texts.append(_noisy(body, rng))
        out_labels.append(str(rng.choice(labels)) if rng.random() < 0.02 else label)
    return pd.DataFrame({"text": texts, "label": out_labels})


def _noisy(text: str, rng) -> str:
    words = text.split()
    for i, word in enumerate(words):
        if len(word) > 3 and rng.random() < 0.02:  # a typo: two neighbouring letters swapped
            j = int(rng.integers(0, len(word) - 1))
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    text = " ".join(words)
    roll = rng.random()
    return text.lower() if roll < 0.1 else text.upper() if roll < 0.13 else text


def write(frame: pd.DataFrame, path: str, legacy: bool = False) -> None:
    """CSV as users have it: UTF-8 with ",", or (legacy) Latin-1 with ";" and decimal commas."""
    if legacy:
        frame.to_csv(path, index=False, sep=";", decimal=",", encoding="latin-1")
    else:
        frame.to_csv(path, index=False)


def main(argv: list[str]) -> int:
    tables = {"churn": churn, "house_prices": house_prices, "messy": messy, "tickets": tickets}
    if len(argv) < 2 or argv[0] not in tables:
        print(f"usage: python -m loopml.examples {{{','.join(tables)}}} OUT.csv [--rows N]", file=sys.stderr)
        return 2
    rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 5000
    write(tables[argv[0]](rows), argv[1], legacy=argv[0] == "messy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
