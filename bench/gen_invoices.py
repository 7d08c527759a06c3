"""Generate realistic plain-text invoices with known expected values.

Used by ``bench/throughput.py`` (thousands of them) and to make the text samples in ``examples/``.
Each invoice is laid out like a printed one — vendor block, label/value pairs in columns, a line
table, totals at the right — in one of several vendor styles, date formats and number formats.

    python bench/gen_invoices.py OUT_DIR [--count N] [--seed S]

writes ``inv-000001.txt`` … and ``expected.json`` (file name → expected fields).
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import date, timedelta
from pathlib import Path

VENDORS = [
    # name, address, currency, number style, date style, label style
    ("ACME Supplies GmbH", "Hauptstrasse 5, 10115 Berlin, Germany", "EUR", "de", "dmy_dots", "en"),
    (
        "Blue Harbor Logistics Ltd",
        "12 Dock Road, Bristol BS1 4RB, UK",
        "GBP",
        "en",
        "d_month_y",
        "en",
    ),
    (
        "Northwind Traders Inc.",
        "400 Pine St, Seattle, WA 98101, USA",
        "USD",
        "en",
        "month_d_y",
        "en",
    ),
    ("Papeterie Durand SARL", "8 rue des Lilas, 69003 Lyon, France", "EUR", "fr", "iso", "en"),
    ("Kappa Software B.V.", "Keizersgracht 100, 1015 Amsterdam", "EUR", "de", "d_month_y", "en"),
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
ITEMS = [
    "Widget A",
    "Widget B",
    "Consulting hours",
    "Support plan (monthly)",
    "Shipping",
    "Paper A4 box",
    "Toner cartridge",
    "Licence seat",
    "Cable set",
    "Installation",
]
SYMBOL = {"EUR": "€", "GBP": "£", "USD": "$"}


def money(value: float, style: str) -> str:
    text = f"{value:,.2f}"
    if style == "de":
        return text.replace(",", "X").replace(".", ",").replace("X", ".")
    if style == "fr":
        return text.replace(",", " ").replace(".", ",")
    return text


def fmt_date(d: date, style: str) -> str:
    if style == "dmy_dots":
        return d.strftime("%d.%m.%Y")
    if style == "d_month_y":
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    if style == "month_d_y":
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
    return d.isoformat()


def invoice(rng: random.Random, index: int) -> tuple[str, dict[str, object]]:
    name, address, currency, nstyle, dstyle, _ = rng.choice(VENDORS)
    number = f"INV-{rng.randint(2019, 2026)}-{index:06d}"
    issued = date(2024, 1, 1) + timedelta(days=rng.randint(0, 700))
    lines = []
    subtotal = 0.0
    for _ in range(rng.randint(2, 8)):
        item = rng.choice(ITEMS)
        qty = rng.randint(1, 20)
        unit = round(rng.uniform(1, 400), 2)
        amount = round(qty * unit, 2)
        subtotal += amount
        lines.append(f"{item:<34}{qty:>6}{money(unit, nstyle):>14}{money(amount, nstyle):>16}")
    subtotal = round(subtotal, 2)
    tax = round(subtotal * 0.2, 2)
    total = round(subtotal + tax, 2)
    sym = SYMBOL[currency]
    pad = 48
    text = "\n".join(
        [
            f"{name:<56}INVOICE",
            address,
            "",
            f"{'Invoice No: ' + number:<{pad}}Date: {fmt_date(issued, dstyle)}",
            f"{'Customer: Client ' + str(rng.randint(100, 999)):<{pad}}Due: {fmt_date(issued + timedelta(days=30), dstyle)}",
            "",
            f"{'Description':<34}{'Qty':>6}{'Unit price':>14}{'Amount':>16}",
            "-" * 70,
            *lines,
            "-" * 70,
            f"{'':<40}{'Subtotal:':<12}{money(subtotal, nstyle):>18}",
            f"{'':<40}{'VAT 20%:':<12}{money(tax, nstyle):>18}",
            f"{'':<40}{'Total:':<12}{sym + ' ' + money(total, nstyle):>18}",
            "",
            f"Currency: {currency}",
            "Thank you for your business.",
            "",
        ]
    )
    expected = {
        "invoice_number": number,
        "invoice_date": issued.isoformat(),
        "total": total,
        "currency": currency,
        "issuer": name,
    }
    return text, expected


def generate(out: Path, count: int, seed: int = 7) -> dict[str, dict[str, object]]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, object]] = {}
    for i in range(1, count + 1):
        text, exp = invoice(rng, i)
        name = f"inv-{i:06d}.txt"
        (out / name).write_text(text, encoding="utf-8")
        expected[name] = exp
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    expected = generate(args.out, args.count, args.seed)
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
