"""``apply_classifier``: score every class by its rules; the best one ≥ ``min_score`` wins."""

from __future__ import annotations

import fnmatch
import posixpath

from flowd.engine.records import Record, RecordStatus
from flowd.engine.steps.scope import record_scope
from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope
from flowd.flows.specs import ClassifierSpec, ClassifierStepSpec, RuleSpec

RULE_REGEX_TIMEOUT_S = 1.0  # a catastrophic rule pattern counts as "no match", it never hangs


def _matches(rule: RuleSpec, text: str, lowered: str, scope: Scope) -> bool:
    if rule.contains:
        return any(word in lowered for word in rule.contains)
    if rule.pattern is not None:
        try:
            return rule.pattern.search(text, timeout=RULE_REGEX_TIMEOUT_S) is not None
        except TimeoutError:
            return False
    if rule.formula is not None:
        try:
            return bool(rule.formula.evaluate(scope))
        except FormulaRuntimeError:
            return False
    if rule.filename is not None:
        return fnmatch.fnmatch(posixpath.basename(scope.filename).lower(), rule.filename.lower())
    return False


def classify(
    spec: ClassifierSpec, record: Record, runtime_config: dict[str, object]
) -> tuple[str, float]:
    """The winning class label and its score for one record (ties go to the earlier class)."""
    scope = record_scope(record, runtime_config, with_fields=False)
    lowered = record.text.lower()
    best_label, best_score = spec.default_class, 0.0
    found = False
    for cls in spec.classes:
        score = sum(r.weight for r in cls.rules if _matches(r, record.text, lowered, scope))
        if score >= spec.min_score and (not found or score > best_score):
            best_label, best_score, found = cls.name, score, True
    return best_label, best_score


def apply_classifier(
    step: ClassifierStepSpec, records: list[Record], runtime_config: dict[str, object]
) -> list[Record]:
    out: list[Record] = []
    keep = set(step.filter_classes)
    for rec in records:
        if rec.status is not RecordStatus.OK:
            out.append(rec)
            continue
        label, score = classify(step.classifier, rec, runtime_config)
        status = RecordStatus.FILTERED if keep and label not in keep else RecordStatus.OK
        out.append(rec.evolve(class_label=label, class_score=score, status=status))
    return out


__all__ = ["apply_classifier", "classify"]
