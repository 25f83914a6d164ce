"""The value sets in data/valuesets.json, indexed for matching codes and drug names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from clinical.finding import Coding

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
ATC = "http://www.whocc.no/atc"


@dataclass(frozen=True)
class ValueSets:
    """Lookups from (system, code) and from free text to value-set names."""

    by_code: dict[tuple[str, str], frozenset[str]]
    system_aliases: dict[str, str]
    icd10cm_prefixes: tuple[tuple[str, str], ...]  # (prefix without dot, value-set name)
    text_pattern: re.Pattern[str]  # every drug name, whole words, one alternation
    names_by_term: dict[str, frozenset[str]]
    codings: dict[str, tuple[Coding, ...]]
    aliased: frozenset[str] = frozenset()  # canonical systems some alias points to
    # product names read before: a formulary's few hundred names recur across every chart
    products: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)

    def names_for_code(self, system: str | None, code: str | None) -> frozenset[str]:
        if not system or not code or system.__class__ is not str or code.__class__ is not str:
            return _NONE  # a system or code that is not text (a list, a number) is no code
        found = self.by_code.get((system, code))
        if found is not None:
            return found
        # Slow path only for codes that may be written another way: an aliased system (an OID),
        # ICD-10-CM without its dot or as a family, or stray white space.
        system = self.system_aliases.get(system, system)
        if system != ICD10CM and system not in self.aliased and code == code.strip():
            return _NONE
        if system == ICD10CM:
            code = code.strip().upper()
            names = self.by_code.get((system, code)) or self.by_code.get(
                (system, _icd_with_dot(code)), _NONE
            )
            bare = code.replace(".", "")
            extra = {name for prefix, name in self.icd10cm_prefixes if bare.startswith(prefix)}
            return names | extra if extra else names
        return self.by_code.get((system, code.strip()), _NONE)

    def names_for_text(self, text: str | None) -> frozenset[str]:
        if not text:
            return frozenset()
        found: frozenset[str] = frozenset()
        for term in self.text_pattern.findall(text):
            found = found | self.names_by_term[term.lower()]
        return found

    def names_for_product(self, text: str | None) -> frozenset[str]:
        """The value sets of the drug a product's name names: the drug names in it, less
        those that only describe it ("Anastrozole 0.5 mg (estrogen blocker)" is anastrozole,
        not an estrogen): a name in brackets when one stands outside them, and a name
        followed by "blocker", "inhibitor" and the like."""
        if not text:
            return _NONE
        found = self.products.get(text)
        if found is None:
            if len(self.products) >= _MAX_PRODUCTS:
                self.products.clear()
            found = self.products[text] = self._names_for_product(text)
        return found

    def _names_for_product(self, text: str) -> frozenset[str]:
        matches = [
            match
            for match in self.text_pattern.finditer(text)
            if not _DESCRIBES.match(text, match.end())
        ]
        outside = [match for match in matches if not _in_brackets(text, match.start())]
        found = _NONE
        for match in outside or matches:
            found = found | self.names_by_term[match.group(0).lower()]
        return found

    def codes(self, name: str) -> tuple[Coding, ...]:
        return self.codings[name]

    def names_for_codeable(self, concept: Any) -> frozenset[str]:
        """Names matched by any coding of a CodeableConcept (codes only, not text)."""
        return self.match(concept)[0]

    def match(self, concept: Any) -> tuple[frozenset[str], dict[str, Any] | None]:
        """Names matched by a CodeableConcept's codings, and the first coding that matched."""
        if not isinstance(concept, dict):
            return _NONE, None
        codings = concept.get("coding")
        if not isinstance(codings, list):
            return _NONE, None
        found = _NONE
        first: dict[str, Any] | None = None
        for coding in codings:
            if isinstance(coding, dict):
                names = self.names_for_code(coding.get("system"), coding.get("code"))
                if names:
                    if first is None:
                        first, found = coding, names
                    else:
                        found = found | names
        return found, first


_NONE: frozenset[str] = frozenset()
_MAX_PRODUCTS = 20_000
# A drug name used to describe another drug: "estrogen blocker", "aromatase inhibitor".
_DESCRIBES = re.compile(
    r"\s*-?\s*(?:blockers?|inhibitors?|antagonists?|suppress\w*|receptor|modulators?|lowering)\b",
    re.IGNORECASE,
)


def _in_brackets(text: str, position: int) -> bool:
    before = text[:position]
    return before.count("(") > before.count(")") or before.count("[") > before.count("]")


def _icd_with_dot(code: str) -> str:
    return code if "." in code or len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def build(document: dict[str, Any]) -> ValueSets:
    by_code: dict[tuple[str, str], set[str]] = {}
    codings: dict[str, tuple[Coding, ...]] = {}
    for name, valueset in document["valuesets"].items():
        entries = []
        for entry in valueset["codes"]:
            by_code.setdefault((entry["system"], entry["code"]), set()).add(name)
            entries.append(Coding(entry["system"], entry["code"], entry["display"]))
        codings[name] = tuple(entries)
    prefixes = tuple(
        (prefix.replace(".", ""), name)
        for name, values in document["icd10cm_prefixes"].items()
        if not name.startswith("_")
        for prefix in values
    )
    names_by_term: dict[str, set[str]] = {}
    for name, terms in document["text_patterns"].items():
        if not name.startswith("_"):
            for term in terms:
                names_by_term.setdefault(term.lower(), set()).add(name)
    # Longest terms first so "ethinyl estradiol" wins over "estradiol"; whole words only.
    alternation = "|".join(re.escape(t) for t in sorted(names_by_term, key=len, reverse=True))
    text_pattern = re.compile(rf"(?<![a-z0-9-])(?:{alternation})(?![a-z0-9-])", re.IGNORECASE)
    return ValueSets(
        by_code={key: frozenset(names) for key, names in by_code.items()},
        system_aliases=dict(document["system_aliases"]),
        aliased=frozenset(document["system_aliases"].values()),
        icd10cm_prefixes=prefixes,
        text_pattern=text_pattern,
        names_by_term={term: frozenset(names) for term, names in names_by_term.items()},
        codings=codings,
    )


@cache
def load() -> ValueSets:
    """The packaged value sets, read once."""
    text = resources.files("clinical").joinpath("data/valuesets.json").read_text("utf-8")
    return build(json.loads(text))


def codes_of(names: Iterable[str]) -> tuple[Coding, ...]:
    valuesets = load()
    return tuple(coding for name in names for coding in valuesets.codes(name))
