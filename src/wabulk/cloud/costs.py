"""What a Cloud API job costs: ``enqueue --dry-run --rates rates.csv`` estimates it, and the webhook's
pricing (billable, category) counts what Meta charged.

Meta prices per delivered template message: the rate depends on the template's category (marketing,
utility, authentication) and on the recipient's country (the market of its calling code). Free-form
(``service``) messages and utility templates inside an open 24-hour window are free. The estimate
therefore is an upper bound: every message priced as if delivered outside a window.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from wabulk.errors import BadInput

CATEGORIES = ("marketing", "utility", "authentication", "authentication_international", "service")
ANY_COUNTRY = ("*", "other", "default", "rest of world")
REQUIRED_COLUMNS = ("country", "category", "price")


@dataclass(frozen=True)
class Rates:
    """A rate card: price per message by (country, category). ``country`` is an ISO code (``GB``), a
    calling code (``44`` / ``+44``) or ``*`` for every country the card does not name."""

    prices: Mapping[tuple[str, str], Decimal]
    path: str = ""

    def price(self, region: str | None, dial: str | None, category: str) -> Decimal | None:
        """The price of one ``category`` message to a number of ``region`` (ISO) / ``dial`` (calling
        code), or None when the card has no such rate."""
        # Meta prices by the market of the calling code: a Guernsey (+44) number costs what a UK one does.
        main = _main_region(dial)
        for country in (region, main, dial, "*"):
            if country is not None and (country, category) in self.prices:
                return self.prices[(country, category)]
        return None

    def dearest(self, region: str | None, dial: str | None) -> tuple[str, Decimal] | None:
        """The dearest template category for this country (the estimate when the category is unknown)."""
        found = [
            (p, c) for c in CATEGORIES if c != "service" if (p := self.price(region, dial, c)) is not None
        ]
        if not found:
            return None
        price, category = max(found)
        return category, price


def read_rates(path: Path | str) -> Rates:
    """Read a rates CSV (columns ``country, category, price``; any order, more columns ignored). BadInput
    naming the file, row and column for a bad value."""
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BadInput(f"cannot read the rates file: {exc.strerror or exc}", file=str(p)) from None
    prices: dict[tuple[str, str], Decimal] = {}
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise BadInput("the rates file is empty (columns: country, category, price)", file=str(p))
        cols = {h.strip().lower(): i for i, h in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            raise BadInput(
                f"the rates file has no {', '.join(repr(m) for m in missing)} column "
                f"(columns: country, category, price)",
                file=str(p),
            )
        for row_no, row in enumerate(reader, 2):
            if not any(cell.strip() for cell in row):
                continue
            cells = {c: (row[i].strip() if i < len(row) else "") for c, i in cols.items()}
            country = _country(cells["country"])
            if not country:
                raise BadInput("no country", file=str(p), row=row_no, column=header[cols["country"]])
            category = cells["category"].lower()
            if category not in CATEGORIES:
                raise BadInput(
                    f"unknown category {cells['category']!r} (one of: {', '.join(CATEGORIES)})",
                    file=str(p),
                    row=row_no,
                    column=header[cols["category"]],
                )
            try:
                price = Decimal(cells["price"].replace(",", "."))
            except InvalidOperation:
                price = Decimal(-1)
            if not price.is_finite() or price < 0:
                raise BadInput(
                    f"{cells['price']!r} is not a price (a number like 0.0456)",
                    file=str(p),
                    row=row_no,
                    column=header[cols["price"]],
                )
            prices[(country, category)] = price
    if not prices:
        raise BadInput("the rates file has no rates", file=str(p))
    return Rates(prices, str(p))


def _country(raw: str) -> str:
    v = raw.strip()
    if v.lower() in ANY_COUNTRY:
        return "*"
    if v.lstrip("+").isdigit():
        return v.lstrip("+")
    return v.upper()


def _main_region(dial: str | None) -> str | None:
    if not dial or not dial.isdigit():
        return None
    import phonenumbers

    region = phonenumbers.region_code_for_country_code(int(dial))
    return region if region and region != "ZZ" else None


def country_of(phone: str) -> tuple[str | None, str | None]:
    """(ISO region, calling code) of an E.164 number; (None, None) when phonenumbers cannot tell."""
    import phonenumbers

    try:
        num = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None, None
    region = phonenumbers.region_code_for_number(num)
    return (region if region and region != "ZZ" else None), str(num.country_code)


@dataclass
class CountryCost:
    country: str  # ISO region, else "+<calling code>"
    messages: int = 0
    price: Decimal | None = None  # per message; None: the card has no rate for it

    @property
    def subtotal(self) -> Decimal | None:
        return None if self.price is None else self.price * self.messages


@dataclass
class CostEstimate:
    """The cost of a job's messages by recipient country, for one template ``category`` (None: unknown,
    each country priced at its dearest template category)."""

    rates: Rates
    category: str | None
    countries: dict[str, CountryCost] = field(default_factory=dict)
    assumed: dict[str, str] = field(default_factory=dict)  # country -> category, when it was unknown

    def add(self, phone: str) -> None:
        """Count one message to ``phone``."""
        region, dial = country_of(phone)
        key = region or (f"+{dial}" if dial else "?")
        entry = self.countries.get(key)
        if entry is None:
            entry = self.countries[key] = CountryCost(key)
            category = self.category.lower() if self.category else None
            if category is not None:
                entry.price = self.rates.price(region, dial, category)
            else:
                dearest = self.rates.dearest(region, dial)
                if dearest is not None:
                    self.assumed[key], entry.price = dearest
        entry.messages += 1

    def add_all(self, phones: Iterable[str]) -> None:
        for phone in phones:
            self.add(phone)

    @property
    def total(self) -> Decimal:
        return sum((c.subtotal or Decimal(0) for c in self.countries.values()), Decimal(0))

    @property
    def unpriced(self) -> int:
        """Messages to countries the rate card has no price for (not in ``total``)."""
        return sum(c.messages for c in self.countries.values() if c.price is None)

    def rows(self) -> list[CountryCost]:
        """Countries, dearest subtotal first."""
        return sorted(self.countries.values(), key=lambda c: (-(c.subtotal or Decimal(-1)), c.country))

    def as_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "total": str(self.total),
            "unpriced_messages": self.unpriced,
            "countries": [
                {
                    "country": c.country,
                    "messages": c.messages,
                    "price": None if c.price is None else str(c.price),
                    "subtotal": None if c.subtotal is None else str(c.subtotal),
                    **({"assumed_category": self.assumed[c.country]} if c.country in self.assumed else {}),
                }
                for c in self.rows()
            ],
        }
