"""The rows as CSV or NDJSON, and the run's summary in counts only (no patient id, no value:
it can go to a log)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, TextIO

import orjson

from anastrozole_cds.population.judging import COLUMNS, DATA_INCOMPLETE, Row

OutputFormat = Literal["csv", "ndjson"]
GAP_SEPARATOR: Final = " | "  # between a finding's data gaps in CSV (each a sentence)
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"):
# such a cell is written after a single quote, which the spreadsheet shows as text.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


@dataclass(slots=True)
class FindingCounts:
    patients: int = 0
    without_findings: int = 0
    with_data_missing: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)

    def add(self, rows: list[Row]) -> list[Row]:
        self.patients += 1
        findings = [row for row in rows if row["rule_id"] != DATA_INCOMPLETE]
        self.without_findings += not findings
        self.with_data_missing += len(findings) != len(rows)
        self.by_rule.update(row["rule_id"] for row in findings)
        return rows


def write_rows(
    per_patient: Iterable[tuple[str, list[Row]]], stream: TextIO, output_format: OutputFormat
) -> FindingCounts:
    """Write each row as CSV (with a header) or an NDJSON line; count as it goes."""
    counts = FindingCounts()
    rows = (row for _, patient_rows in per_patient for row in counts.add(patient_rows))
    if output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(csv_values(row))
    else:
        for row in rows:
            stream.write(orjson.dumps(row).decode())
            stream.write("\n")
    return counts


def csv_values(row: Row) -> list[str]:
    lists = {"evidence": " ", "data_gaps": GAP_SEPARATOR}
    return [
        as_text(lists[name].join(row[name]) if name in lists else row[name] or "")
        for name in COLUMNS
    ]


def as_text(cell: str) -> str:
    """The cell as a spreadsheet will show it, never run it: a leading quote before a formula
    character (a patient id may be "-2-3"; an export's text may be anything)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell
