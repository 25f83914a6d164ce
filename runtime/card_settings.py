"""The `[cards]` table: which cards each hook shows, and how long an answered card stays away.

An EHR admin writes, for example:

    [cards]
    suppression_days = 30                 # an acknowledged card stays away this long...
    critical_suppression_seconds = 14400  # ...a critical one at most this long

    [cards.patient-view]
    show = "info"                         # the least severe card shown: info, warning, critical, none
    anastrozole-intent = "unclear"        # one rule's own floor wins over `show`
    group_monitoring = true               # several monitoring reminders as one card

    [cards.order-sign]
    show = "warning"

A hook's table is read over its defaults key by key (`DEFAULT_HOOKS`). Every wrong key stops
start-up with one line naming it (`CardSettingError`). docs/cds-hooks.md, "Alert burden", says
why the defaults are what they are.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from clinical.finding import Severity
from clinical.rules import RULE_IDS

HOOKS = ("patient-view", "order-select", "order-sign")
NONE = "none"  # show no card of this rule (or hook); the SMART app still lists it
UNCLEAR = "unclear"  # anastrozole-intent only: its card when the intent is unclear
INTENT_RULE = "anastrozole-intent"
FLOORS = (*(severity.value for severity in Severity), NONE)
HOOK_KEYS = ("show", "group_monitoring")
TABLE_KEYS = ("suppression_days", "critical_suppression_seconds", "patient_key")
MAX_SUPPRESSION_DAYS = 365
MAX_CRITICAL_SECONDS = 86_400  # a critical finding comes back within a day, whatever is set
MIN_PATIENT_KEY_CHARACTERS = 32


class CardSettingError(ValueError):
    """One setting is wrong; `name` is its dotted name. runtime.settings re-raises it as its own."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class HookCards:
    """What one hook shows: a floor for every rule, and one rule's own floor over it."""

    show: str  # info | warning | critical | none
    rules: Mapping[str, str] = field(default_factory=dict)  # rule id -> floor (or "unclear")
    group_monitoring: bool = False

    def floor_for(self, rule_id: str) -> str:
        return self.rules.get(rule_id, self.show)


# What a clinician would choose (docs/cds-hooks.md, "Alert burden"): the chart shows what needs
# action, the interruptive order hooks warnings and criticals; the intent card only when the
# intent is unclear (otherwise its line is in the detail of the cards shown).
DEFAULT_HOOKS: Mapping[str, HookCards] = {
    "patient-view": HookCards("info", {INTENT_RULE: UNCLEAR}, group_monitoring=True),
    "order-select": HookCards("warning", {INTENT_RULE: UNCLEAR}),
    "order-sign": HookCards("warning", {INTENT_RULE: UNCLEAR}),
}


@dataclass(frozen=True, slots=True)
class CardSettings:
    """The `[cards]` table, read and checked."""

    hooks: Mapping[str, HookCards] = field(default_factory=lambda: dict(DEFAULT_HOOKS))
    # An acknowledged card (overridden with a reason, or a suggestion accepted) is not shown
    # again for the same patient, rule and evidence for this long. 30 days: the repeated
    # opens of one episode (results, refills, messages) are spared, the next visit sees it.
    suppression_days: int = 30
    # A critical finding at most this long: one clinic session (4 h), then the next person
    # who opens the chart sees it again.
    critical_suppression_seconds: int = 4 * 3600
    patient_key: str | None = field(default=None, repr=False)  # secret: HMAC key of patient ids

    def for_hook(self, hook: str) -> HookCards:
        """A hook's cards; a hook this table does not name shows everything."""
        return self.hooks.get(hook, HookCards(Severity.INFO.value))


def read_card_settings(table: Mapping[str, Any]) -> CardSettings:
    """The `[cards]` table over the defaults; CardSettingError names the first key that is wrong."""
    settings = CardSettings()
    hooks = dict(settings.hooks)
    changes: dict[str, Any] = {}
    for key, value in table.items():
        name = f"cards.{key}"
        if key in HOOKS:
            hooks[key] = _hook_cards(name, value, hooks[key])
        elif key == "suppression_days":
            changes[key] = _whole_number(name, value, 0, MAX_SUPPRESSION_DAYS, "days")
        elif key == "critical_suppression_seconds":
            changes[key] = _whole_number(name, value, 0, MAX_CRITICAL_SECONDS, "seconds")
        elif key == "patient_key":
            changes[key] = _patient_key(name, value)
        else:
            raise CardSettingError(name, _unknown(key, (*TABLE_KEYS, *HOOKS), "[cards] setting"))
    return replace(settings, hooks=hooks, **changes)


def _hook_cards(name: str, value: Any, default: HookCards) -> HookCards:
    if not isinstance(value, Mapping):
        raise CardSettingError(name, 'must be a table, e.g. [cards.patient-view] show = "warning"')
    show, group, rules = default.show, default.group_monitoring, dict(default.rules)
    for key, setting in value.items():
        where = f"{name}.{key}"
        if key == "show":
            show = _floor(where, setting, allow_unclear=False)
        elif key == "group_monitoring":
            group = _boolean(where, setting)
        elif key in RULE_IDS:
            rules[key] = _floor(where, setting, allow_unclear=key == INTENT_RULE)
        else:
            raise CardSettingError(where, _unknown(key, (*HOOK_KEYS, *RULE_IDS), "key or rule id"))
    return HookCards(show, rules, group)


def _floor(name: str, value: Any, *, allow_unclear: bool) -> str:
    allowed = (*FLOORS, UNCLEAR) if allow_unclear else FLOORS
    if isinstance(value, str) and value.strip().lower() in allowed:
        return value.strip().lower()
    if isinstance(value, str) and value.strip().lower() == UNCLEAR:
        raise CardSettingError(name, f"'{UNCLEAR}' is only for {INTENT_RULE}")
    _cannot_use(name, value, "one of " + ", ".join(allowed))


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    _cannot_use(name, value, "true or false")


def _whole_number(name: str, value: Any, low: int, high: int, unit: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():  # from an environment variable
        number = int(value.strip())
    if number is None or not low <= number <= high:
        _cannot_use(name, value, f"a whole number of {unit} from {low} to {high}")
    return number


def _patient_key(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) < MIN_PATIENT_KEY_CHARACTERS:
        # never echo a secret, even a wrong one
        raise CardSettingError(
            name,
            f"must be a random secret of at least {MIN_PATIENT_KEY_CHARACTERS} characters "
            '(make one with `python -c "import secrets; print(secrets.token_hex(32))"`)',
        )
    return value.strip()


def _cannot_use(name: str, value: Any, expected: str) -> NoReturn:
    raise CardSettingError(name, f"cannot use {value!r}: {expected}")


def _unknown(key: str, known: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown {what}" + (f" (did you mean {close[0]}?)" if close else "")
