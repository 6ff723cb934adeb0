"""Render the bill of materials (hw/bom.csv) as the table in hw/README.md.

    python tools/hw_bom.py           # rewrite the bom-table block in hw/README.md
    python tools/hw_bom.py --check   # exit 1 if the README's table differs from the CSV

Every row has a unit price, a currency, the date of the price, a source, and a status:
``verified`` when the price was read from a dated source, ``approx.`` when it was not.
``board`` says which build needs the row (zero2w, pi5 or both); ``qty`` 0 marks an option.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hw_docs import block, md_table, replace_block

REPO = Path(__file__).resolve().parents[1]
CSV = REPO / "hw" / "bom.csv"
README = REPO / "hw" / "README.md"
BLOCK = "bom-table"
COLUMNS = (
    "item", "board", "qty", "manufacturer", "part_number", "vendor", "vendor_sku",
    "unit_price", "currency", "price_date", "price_status", "source", "notes",
)  # fmt: skip
BOARDS = {"zero2w": "Pi Zero 2 W build", "pi5": "Pi 5 build"}
STATUSES = ("verified", "approx.")


def load(path: Path = CSV) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: columns must be {', '.join(COLUMNS)}")
        return list(reader)


def problems(rows: list[dict[str, str]]) -> list[str]:
    out = []
    for n, row in enumerate(rows, start=2):
        where = f"bom.csv line {n} ({row.get('item') or '?'})"
        for key in ("item", "manufacturer", "part_number", "currency", "price_date", "source"):
            if not (row.get(key) or "").strip():
                out.append(f"{where}: no {key}")
        try:
            if float(row["unit_price"]) < 0:
                raise ValueError
        except (TypeError, ValueError):
            out.append(f"{where}: unit_price {row.get('unit_price')!r} is not a price")
        if row.get("board") not in (*BOARDS, "both"):
            out.append(f"{where}: board must be zero2w, pi5 or both")
        if row.get("price_status") not in STATUSES:
            out.append(f"{where}: price_status must be one of {STATUSES}")
        if not (row.get("qty") or "").isdigit():
            out.append(f"{where}: qty must be a whole number")
    return out


def totals(rows: list[dict[str, str]]) -> dict[str, float]:
    return {
        board: sum(
            int(r["qty"]) * float(r["unit_price"]) for r in rows if r["board"] in (board, "both")
        )
        for board in BOARDS
    }


def table(rows: list[dict[str, str]]) -> str:
    header = ["item", "for", "qty", "manufacturer / part", "vendor SKU", "unit price", "status"]
    header += ["source", "notes"]
    body = []
    for r in rows:
        body.append(
            [
                r["item"],
                r["board"],
                r["qty"] if r["qty"] != "0" else "option",
                f"{r['manufacturer']}: {r['part_number']}",
                r["vendor_sku"] or "-",
                f"{float(r['unit_price']):.2f} {r['currency']} ({r['price_date']})",
                r["price_status"],
                r["source"],
                r["notes"],
            ]
        )
    currency = {r["currency"] for r in rows}
    unit = currency.pop() if len(currency) == 1 else "(mixed currencies)"
    sums = "; ".join(f"{BOARDS[b]} about {t:.0f} {unit}" for b, t in totals(rows).items())
    return (
        md_table(header, body)
        + f"\nTotals without options (qty shown as option): {sums}. "
        + "Rendered by tools/hw_bom.py from hw/bom.csv.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    rows = load()
    issues = problems(rows)
    for issue in issues:
        print(issue)
    want = table(rows)
    text = README.read_text()
    if block(text, BLOCK) != want:
        if args.check:
            print(f"out of date: {README.relative_to(REPO)}")
            return 1
        README.write_text(replace_block(text, BLOCK, want))
        print(f"wrote: {README.relative_to(REPO)}")
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
