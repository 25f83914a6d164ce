"""The override report for the committee that owns the rules: cards shown per rule per week,
how often they were accepted and overridden, the reasons given (user comments counted, never
shown), and the findings kept away by an acknowledgement; per EHR (issuer) and tenant.

`anastrozole-cds report --since DATE [--format html|csv] [--output FILE]`. The HTML is one
file: tables and SVG charts (cds_hooks/report_svg.py), no script, nothing loaded. A card of
several monitoring reminders counts as one card shown for each of its rules; an accepted
answer to it counts for the rules whose orders were accepted (runtime/acknowledgements.py).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape

from cds_hooks.report_svg import Series, columns, horizontal_bars
from clinical.rules import RULES
from runtime.acknowledgements import ACCEPTED, OVERRIDDEN, Answer, CardCount

NO_REASON = "(no reason)"
NOT_GIVEN = "(none)"  # an issuer or tenant the call did not have
ACCEPTED_COLOUR, OVERRIDDEN_COLOUR, UNANSWERED_COLOUR, KEPT_AWAY_COLOUR = (
    "#15803d",
    "#c2410c",
    "#9ca3af",
    "#93c5fd",
)


@dataclass
class Tally:
    """Counts for one rule, week, EHR and tenant (or any sum of them)."""

    shown: int = 0
    kept_away: int = 0  # findings an acknowledgement kept from being shown
    accepted: set[str] = field(default_factory=set)  # card uuids
    overridden: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)  # override reason -> cards
    comments: int = 0  # answers that came with a comment

    def add(self, other: Tally) -> None:
        self.shown += other.shown
        self.kept_away += other.kept_away
        self.accepted |= other.accepted
        self.overridden |= other.overridden
        self.reasons.update(other.reasons)
        self.comments += other.comments

    @property
    def with_reason(self) -> int:
        return sum(n for reason, n in self.reasons.items() if reason != NO_REASON)

    def rate(self, cards: set[str]) -> float | None:
        return len(cards) / self.shown if self.shown else None


Key = tuple[date, str, str, str]  # week (Monday), issuer, tenant, rule


@dataclass(frozen=True)
class Report:
    since: date
    tallies: dict[Key, Tally]

    def by(
        self, *, week: bool = False, issuer: bool = False, rule: bool = False
    ) -> dict[tuple[object, ...], Tally]:
        """The tallies summed over what is not asked for, keyed in the order asked."""
        summed: dict[tuple[object, ...], Tally] = defaultdict(Tally)
        for (monday, ehr, tenant, rule_id), tally in self.tallies.items():
            key: tuple[object, ...] = ()
            key += (monday,) if week else ()
            key += (ehr, tenant) if issuer else ()
            key += (rule_id,) if rule else ()
            summed[key].add(tally)
        return dict(sorted(summed.items(), key=lambda item: tuple(map(str, item[0]))))

    @property
    def total(self) -> Tally:
        return self.by().get((), Tally())

    @property
    def reason_codes(self) -> list[str]:
        codes = {reason for tally in self.tallies.values() for reason in tally.reasons}
        return sorted(codes - {NO_REASON}) + ([NO_REASON] if NO_REASON in codes else [])


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def build_report(since: date, counts: Iterable[CardCount], answers: Iterable[Answer]) -> Report:
    tallies: dict[Key, Tally] = defaultdict(Tally)
    for count in counts:
        tally = tallies[_key(count.day, count.issuer, count.tenant, count.rule_id)]
        if count.shown:
            tally.shown += count.cards
        else:
            tally.kept_away += count.cards
    for answer in answers:
        tally = tallies[_key(answer.day, answer.issuer, answer.tenant, answer.rule_id)]
        if answer.outcome == ACCEPTED:
            tally.accepted.add(answer.card_uuid)
        elif answer.outcome == OVERRIDDEN:
            if answer.card_uuid not in tally.overridden:
                tally.reasons[answer.reason_code or NO_REASON] += 1
            tally.overridden.add(answer.card_uuid)
        tally.comments += answer.commented
    return Report(since, dict(tallies))


def _key(day: date, issuer: str | None, tenant: str | None, rule_id: str) -> Key:
    return (monday_of(day), issuer or NOT_GIVEN, tenant or NOT_GIVEN, rule_id)


# -- CSV ------------------------------------------------------------------------------------------


def report_csv(report: Report) -> str:
    """One row per week, EHR, tenant and rule; a column per override reason given."""
    reasons = report.reason_codes
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "week_start",
            "issuer",
            "tenant",
            "rule",
            "cards_shown",
            "accepted",
            "overridden",
            "overridden_with_reason",
            "acceptance_rate",
            "override_rate",
            "comments",
            "kept_away",
            *(f"reason:{reason}" for reason in reasons),
        ]
    )
    for (monday, issuer, tenant, rule), tally in report.by(
        week=True, issuer=True, rule=True
    ).items():
        writer.writerow(
            [
                monday,
                issuer,
                tenant,
                rule,
                tally.shown,
                len(tally.accepted),
                len(tally.overridden),
                tally.with_reason,
                _decimal(tally.rate(tally.accepted)),
                _decimal(tally.rate(tally.overridden)),
                tally.comments,
                tally.kept_away,
                *(tally.reasons.get(reason, 0) for reason in reasons),
            ]
        )
    return out.getvalue()


def _decimal(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.3f}"


# -- HTML -----------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:1.5rem auto;padding:0 1rem;color:#111827;line-height:1.45}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child,.text{text-align:left}
caption{text-align:left;font-weight:600;padding:.3rem 0}
.chart{display:block;margin:.5rem 0 1rem;max-width:100%;height:auto}
.note{color:#4b5563;font-size:13px}
"""


def report_html(report: Report, *, generated: str) -> str:
    """One self-contained page: no script, no stylesheet or font from elsewhere."""
    total = report.total
    body = [
        f"<h1>Anastrozole monitoring: cards and answers since {report.since}</h1>",
        f'<p class="note">Generated {escape(generated)}. A card shown is counted once per rule '
        "(a card of several monitoring reminders once for each). Accepted: a suggestion "
        "accepted; overridden: dismissed, with or without a reason. Kept away: a finding not "
        "shown because a clinician had answered the same card, on the same evidence, with a "
        "reason. Comments are counted; their text is never shown here.</p>",
        _summary(total),
        _weekly_chart(report),
        _rule_chart(report),
        _reason_chart(report),
        _rule_table(report),
        _reason_table(report),
        _issuer_table(report),
        _weekly_table(report),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        # nothing may load: the page is read offline and archived as it is
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src 'none'\">"
        f"<title>Override report since {report.since}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def _summary(total: Tally) -> str:
    rows = [
        ("Cards shown", str(total.shown)),
        ("Accepted", f"{len(total.accepted)} ({_percent(total.rate(total.accepted))})"),
        ("Overridden", f"{len(total.overridden)} ({_percent(total.rate(total.overridden))})"),
        ("Overridden with a reason", str(total.with_reason)),
        ("Answers with a comment", str(total.comments)),
        ("Kept away (acknowledged)", str(total.kept_away)),
    ]
    cells = "".join(f'<tr><th class="text">{escape(a)}</th><td>{b}</td></tr>' for a, b in rows)
    return f'<table id="summary"><caption>In total</caption>{cells}</table>'


def _outcome_series(tallies: Sequence[Tally], *, kept_away: bool) -> list[Series]:
    series = [
        Series("accepted", ACCEPTED_COLOUR, tuple(float(len(t.accepted)) for t in tallies)),
        Series(
            "overridden",
            OVERRIDDEN_COLOUR,
            tuple(float(len(t.overridden - t.accepted)) for t in tallies),
        ),
        Series(
            "no answer",
            UNANSWERED_COLOUR,
            tuple(float(max(t.shown - len(t.accepted | t.overridden), 0)) for t in tallies),
        ),
    ]
    if kept_away:
        series.append(
            Series("kept away", KEPT_AWAY_COLOUR, tuple(float(t.kept_away) for t in tallies))
        )
    return series


def _weekly_chart(report: Report) -> str:
    weeks = report.by(week=True)
    tallies = list(weeks.values())
    return "<h2>Cards per week</h2>" + columns(
        "chart-weeks",
        "Cards shown per week, by answer, and findings kept away",
        "Stacked columns, one per week starting on the Monday shown: cards accepted, "
        "overridden, not answered, and findings kept away by an acknowledgement.",
        [str(key[0]) for key in weeks],
        _outcome_series(tallies, kept_away=True),
    )


def _rule_chart(report: Report) -> str:
    rules = report.by(rule=True)
    return "<h2>Acceptance and override by rule</h2>" + horizontal_bars(
        "chart-rules",
        "Acceptance and override rates by rule",
        "One bar per rule: the share of its cards accepted, overridden and not answered; the "
        "number after each bar is the cards shown.",
        [str(key[0]) for key in rules],
        _outcome_series(list(rules.values()), kept_away=False),
        percent=True,
    )


def _reason_chart(report: Report) -> str:
    reasons = Counter[str]()
    for tally in report.tallies.values():
        reasons.update(tally.reasons)
    names = [r for r in report.reason_codes]
    return "<h2>Override reasons</h2>" + horizontal_bars(
        "chart-reasons",
        "Override reasons given, all rules",
        "One bar per override reason code: the cards overridden with it.",
        [_reason_label(name, with_code=False) for name in names],
        [Series("cards overridden", OVERRIDDEN_COLOUR, tuple(float(reasons[n]) for n in names))],
    )


def _reason_label(code: str, *, with_code: bool = True) -> str:
    for rule in RULES.values():
        for reason in rule.override_reasons:
            if reason.code == code:
                return f"{reason.display} ({code})" if with_code else reason.display
    return code


def _table(
    table_id: str,
    caption: str,
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    words: int = 1,
) -> str:
    """A table whose first `words` columns are text (left) and the rest counts (right)."""

    def cell(tag: str, index: int, value: object) -> str:
        kind = ' class="text"' if index < words else ""
        return f"<{tag}{kind}>{escape(str(value))}</{tag}>"

    header = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<table id="{table_id}"><caption>{escape(caption)}</caption>'
        f"<tr>{header}</tr>{body}</table>"
    )


_COUNTS = ("cards shown", "accepted", "overridden", "with a reason", "comments", "kept away")


def _counts(tally: Tally) -> list[object]:
    return [
        tally.shown,
        f"{len(tally.accepted)} ({_percent(tally.rate(tally.accepted))})",
        f"{len(tally.overridden)} ({_percent(tally.rate(tally.overridden))})",
        tally.with_reason,
        tally.comments,
        tally.kept_away,
    ]


def _rule_table(report: Report) -> str:
    rows = [[key[0], *_counts(tally)] for key, tally in report.by(rule=True).items()]
    return _table("rules", "By rule", ("rule", *_COUNTS), rows)


def _reason_table(report: Report) -> str:
    rows = [
        [key[0], _reason_label(reason), count]
        for key, tally in report.by(rule=True).items()
        for reason, count in sorted(tally.reasons.items())
    ]
    return _table("reasons", "Override reasons by rule", ("rule", "reason", "cards"), rows, words=2)


def _issuer_table(report: Report) -> str:
    rows = [[key[0], key[1], *_counts(tally)] for key, tally in report.by(issuer=True).items()]
    return _table(
        "issuers", "By EHR (issuer) and tenant", ("issuer", "tenant", *_COUNTS), rows, words=2
    )


def _weekly_table(report: Report) -> str:
    rows = [
        [key[0], key[1], key[2], key[3], *_counts(tally)]
        for key, tally in report.by(week=True, issuer=True, rule=True).items()
    ]
    return _table(
        "weeks",
        "By week, EHR, tenant and rule",
        ("week starting", "issuer", "tenant", "rule", *_COUNTS),
        rows,
        words=4,
    )
