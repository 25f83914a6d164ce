"""What a run read, met and found, in counts only (no patient id, no value: it can go to a
log), and the exit status that follows (docs/population.md, "Exit codes")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from anastrozole_cds.population import lines as L
from anastrozole_cds.population.writing import FindingCounts

if TYPE_CHECKING:
    from anastrozole_cds.population.layout import ExportFile, Layout
    from anastrozole_cds.population.reading import Population

EXIT_CLEAN: Final = 0
EXIT_UNREADABLE: Final = 1  # lines that are not resources (or the output failed)
EXIT_USAGE: Final = 2  # click's own, for a bad folder or option
EXIT_DATA_MISSING: Final = 3  # data some rows depend on is not in the export


@dataclass(slots=True)
class ReadReport:
    """What the reading counted and met, from either engine."""

    files: int = 0
    lines: int = 0  # non-blank
    outcomes: Counter[str] = field(default_factory=Counter)  # by lines.KEPT, lines.UNREAD...
    bad_lines: int = 0
    patients_in_export: int = 0
    judged: int = 0
    skipped_files: list[str] = field(default_factory=list)  # known non-FHIR files
    missing_files: list[str] = field(default_factory=list)  # listed in the manifest
    short_files: list[tuple[str, int, int]] = field(default_factory=list)  # name, said, read
    server_errors: Counter[str] = field(default_factory=Counter)  # by OperationOutcome code
    server_warnings: int = 0
    missing_medications: int = 0  # orders naming a Medication not in the export
    without_patient_resource: int = 0  # judged patients

    def data_missing(self) -> list[str]:
        """Each reason some rows may be missing or wrong, in words (counts only)."""
        reasons = []
        if self.missing_files:
            reasons.append(
                f"{len(self.missing_files)} files the manifest lists are not in the folder: {', '.join(self.missing_files)}"
            )
        reasons += [
            f"{name} holds {read} resources, the manifest says {said}"
            for name, said, read in self.short_files
        ]
        if self.server_errors:
            codes = ", ".join(f"{code} {n}" for code, n in sorted(self.server_errors.items()))
            reasons.append(
                f"the server reported {self.server_errors.total()} errors in its export ({codes}): see the error files"
            )
        if self.missing_medications:
            reasons.append(
                f"{self.missing_medications} orders name a Medication that is not in the export "
                "(their patients' rows say so)"
            )
        if self.without_patient_resource:
            reasons.append(
                f"{self.without_patient_resource} judged patients have no Patient resource in the "
                "export (their rows say so)"
            )
        if self.outcomes[L.NOBODY]:
            reasons.append(
                f"{self.outcomes[L.NOBODY]} resources the rules read name no patient in a form "
                "that can be resolved (absent, a Group, a conditional reference)"
            )
        return reasons

    def exit_status(self) -> int:
        if self.data_missing():
            return EXIT_DATA_MISSING
        return EXIT_UNREADABLE if self.bad_lines else EXIT_CLEAN

    def summary(self, found: FindingCounts) -> list[str]:
        o = self.outcomes
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(found.by_rule.items()))
        skipped = (
            f" (skipped by name: {', '.join(self.skipped_files)})" if self.skipped_files else ""
        )
        lines = [
            f"read {self.files} files{skipped}, {self.lines} lines: {o[L.KEPT] + o[L.MEDICATION]} "
            f"resources kept, {o[L.UNREAD]} Observations dropped unread, {o[L.OTHER]} of other "
            f"types skipped, {o[L.NOT_JUDGED]} of patients on no drug a rule needs skipped, "
            f"{o[L.NOBODY]} without a patient, {self.bad_lines} bad lines",
            f"evaluated {found.patients} of {self.patients_in_export} patients (the others are on "
            f"neither an aromatase inhibitor nor testosterone: no rule applies; "
            f"{found.without_findings} with no finding, {found.with_data_missing} with data "
            f"missing): {found.by_rule.total()} findings" + (f" ({rules})" if rules else ""),
        ]
        if self.server_warnings:
            lines.append(
                f"the server's export carries {self.server_warnings} warnings: see the error files"
            )
        lines += [f"data missing: {reason}" for reason in self.data_missing()]
        return lines


def report_of(
    layout: Layout, population: Population, read_as: Callable[[ExportFile], str]
) -> ReadReport:
    """The report of a reading, either engine's, checked against what the layout declares;
    `read_as`: the name a listed file's lines were counted under (a path, or a URI)."""
    report = ReadReport(
        files=population.files,
        lines=population.lines,
        outcomes=population.outcomes,
        bad_lines=len(population.problems),
        patients_in_export=population.patients_in_export,
        skipped_files=layout.skipped,
        missing_files=layout.missing,
        missing_medications=len(population.candidates.missing),
    )
    for listed in layout.files:
        read = population.resources_per_file.get(read_as(listed), 0)
        if listed.count is not None and read < listed.count:
            report.short_files.append((listed.name, listed.count, read))
    return report


def read_server_errors(report: ReadReport, lines: Iterable[bytes]) -> int:
    """Count the issues of the OperationOutcome lines of an export's error files into
    `report` (errors by code; warnings); the bad lines are returned."""
    bad = 0
    for line in lines:
        line = L.clean(line)
        if not line:
            continue
        outcome = L.parse_resource(line)
        if isinstance(outcome, str) or outcome["resourceType"] != "OperationOutcome":
            bad += 1
            continue
        for issue in outcome.get("issue") or [{}]:
            issue = issue if isinstance(issue, dict) else {}
            if issue.get("severity") in ("warning", "information"):
                report.server_warnings += 1
            else:  # error, fatal, or unsaid: data may be missing
                report.server_errors[str(issue.get("code") or "unknown")] += 1
    return bad
