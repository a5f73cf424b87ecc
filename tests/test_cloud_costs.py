"""Costs: ``enqueue --dry-run --rates rates.csv`` and the billable counts recorded from webhooks."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wabulk import exitcodes
from wabulk.cli import app
from wabulk.cloud.costs import CostEstimate, read_rates
from wabulk.errors import BadInput
from wabulk.models import CatalogueTemplate, NewJob, NewMessage
from wabulk.queue import Queue

runner = CliRunner()


def write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def rates(tmp_path: Path) -> Path:
    return write(
        tmp_path / "rates.csv",
        [
            ["Country", "Category", "Price", "Note"],
            ["GB", "utility", "0.0220", ""],
            ["GB", "marketing", "0.0529", ""],
            ["+1", "utility", "0,0040", "comma decimals are read too"],
            ["*", "utility", "0.0100", ""],
        ],
    )


def test_estimate_by_country_and_category(rates: Path) -> None:
    card = read_rates(rates)
    est = CostEstimate(card, "UTILITY")
    # +44 7911 is a Guernsey number: Meta prices it in the +44 market, so the GB rate applies.
    est.add_all(["+447700900123", "+447911123456", "+14155550123", "+4915112345678", "+4915112345679"])
    rows = {c.country: (c.messages, c.price, c.subtotal) for c in est.rows()}
    assert rows["US"] == (1, Decimal("0.0040"), Decimal("0.0040"))
    assert rows["DE"] == (2, Decimal("0.0100"), Decimal("0.0200"))
    assert est.unpriced == 0
    unknown = CostEstimate(card, None)
    unknown.add("+447911123456")
    assert unknown.assumed == {"GG": "marketing"} and unknown.total == Decimal("0.0529")
    nothing = CostEstimate(
        read_rates(
            write(rates.parent / "gb.csv", [["country", "category", "price"], ["GB", "marketing", "1"]])
        ),
        "UTILITY",
    )
    nothing.add("+14155550123")
    assert nothing.unpriced == 1 and nothing.total == 0


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        (
            [["country", "price"]],
            "the rates file has no 'category' column (columns: country, category, price)",
        ),
        (
            [["country", "category", "price"], ["GB", "promo", "1"]],
            "row 2, column 'category': unknown category 'promo' (one of: marketing, utility, authentication, "
            "authentication_international, service)",
        ),
        (
            [["country", "category", "price"], ["GB", "utility", "-1"]],
            "row 2, column 'price': '-1' is not a price (a number like 0.0456)",
        ),
        ([["country", "category", "price"], ["", "utility", "1"]], "row 2, column 'country': no country"),
    ],
)
def test_bad_rates_name_file_row_and_column(tmp_path: Path, rows: list[list[str]], error: str) -> None:
    path = write(tmp_path / "r.csv", rows)
    with pytest.raises(BadInput) as e:
        read_rates(path)
    assert str(e.value) == f"{path}, {error}" if error.startswith("row") else f"{path}: {error}"


def contacts(tmp_path: Path) -> Path:
    return write(
        tmp_path / "c.csv",
        [
            ["name", "phone", "order"],
            ["Ann", "+447911123456", "B-1"],
            ["Bob", "+14155550123", "B-2"],
            ["Ann again", "+447911123456", "B-1"],
        ],
    )


def test_cli_dry_run_cost_estimate(tmp_path: Path, rates: Path, db_path: Path) -> None:
    q = Queue(db_path)
    q.replace_catalogue(
        "biz", "555", [CatalogueTemplate("order_ready", "en_US", "APPROVED", "UTILITY", 1)], synced_at=1.0
    )
    q.close()
    args = [
        "enqueue",
        str(contacts(tmp_path)),
        "--template",
        "order_ready",
        "--template-param",
        "{order}",
        "--dry-run",
        "--rates",
        str(rates),
    ]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "Estimated cost: utility messages" in result.stdout
    assert "Estimated total: 0.0260 (an upper bound: Meta charges delivered template messages only)" in (
        result.stdout
    )
    data = json.loads(runner.invoke(app, [*args, "--json"], catch_exceptions=False).stdout)
    assert data["cost"] == {
        "category": "UTILITY",
        "total": "0.0260",
        "unpriced_messages": 0,
        "countries": [
            {"country": "GG", "messages": 1, "price": "0.0220", "subtotal": "0.0220"},
            {"country": "US", "messages": 1, "price": "0.0040", "subtotal": "0.0040"},
        ],
    }


def test_cli_rates_need_a_dry_run(tmp_path: Path, rates: Path) -> None:
    result = runner.invoke(
        app, ["enqueue", str(contacts(tmp_path)), "--message", "hi", "--rates", str(rates)]
    )
    assert result.exit_code == exitcodes.BAD_INPUT
    assert "the cost estimate is for a dry run: add --dry-run" in result.stderr


def test_billable_counts_per_job_and_category(db_path: Path) -> None:
    q = Queue(db_path)
    job = q.enqueue(
        NewJob(name="t", template="x"), [NewMessage(phone=f"+1415555000{i}", body="b") for i in range(4)]
    )
    with q._tx() as conn:  # what cloud's webhook ingestion records
        conn.execute("UPDATE messages SET pricing_category = 'utility', billable = 1 WHERE id IN (1, 2)")
        conn.execute("UPDATE messages SET pricing_category = 'service', billable = 0 WHERE id = 3")
    assert q.billable_counts() == {
        job.job_id: {"utility": {"billable": 2, "free": 0}, "service": {"billable": 0, "free": 1}}
    }
    q.close()


def test_status_and_export_show_billable_messages_per_category(db_path: Path, tmp_path: Path) -> None:
    q = Queue(db_path)
    job = q.enqueue(
        NewJob(name="t", template="x"), [NewMessage(phone=f"+1415555000{i}", body="b") for i in range(3)]
    )
    with q._tx() as conn:  # what cloud's webhook ingestion records from a status's pricing
        conn.execute("UPDATE messages SET pricing_category = 'utility', billable = 1 WHERE id IN (1, 2)")
        conn.execute("UPDATE messages SET pricing_category = 'utility', billable = 0 WHERE id = 3")
    q.close()
    data = json.loads(runner.invoke(app, ["status", "--json"], catch_exceptions=False).stdout)
    assert data["jobs"][0]["billable"] == {"utility": {"billable": 2, "free": 1}}
    out = runner.invoke(app, ["status"], catch_exceptions=False).stdout
    assert f"Job {job.job_id} billable messages by category: utility 2 (+1 free)" in out
    csv_path = tmp_path / "out.csv"
    assert runner.invoke(app, ["export", str(job.job_id), "--out", str(csv_path)]).exit_code == 0
    rows = list(csv.DictReader(open(csv_path, encoding="utf-8")))
    assert [(r["pricing_category"], r["billable"]) for r in rows] == [
        ("utility", "1"),
        ("utility", "1"),
        ("utility", "0"),
    ]
