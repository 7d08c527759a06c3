"""Records: the unit a step works on (a whole document, or one page of it).

Records are frozen; a step returns new ones. A record's ``text`` is never stored in step outputs
(``.ibmsg``): it is restored from the document (``.ibdoc``) by page numbers, so the text is written
once per file, not once per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RecordStatus(StrEnum):
    """Where a record stands. Only ``OK`` records are worked on by later steps."""

    OK = "OK"
    FILTERED = "FILTERED"  # dropped by apply_classifier's filter_classes
    UNROUTED = "UNROUTED"  # a metaflow had no route for its class and unmatched = "skip"
    STOPPED_AT_CHECKPOINT = "STOPPED_AT_CHECKPOINT"  # failed a validation; waits for review
    FAILED = "FAILED"


class _Keep:
    """Marks an argument of :meth:`Record.evolve` as "unchanged" where ``None`` is a value."""


KEEP = _Keep()


@dataclass(frozen=True, slots=True)
class FieldValue:
    """One extracted field: the ``{key, value, field_type, error_msg?}`` of the results."""

    key: str
    value: Any
    field_type: str = "ANY"
    error_msg: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "value": self.value, "field_type": self.field_type}
        if self.error_msg is not None:
            out["error_msg"] = self.error_msg
        return out

    def __reduce__(self) -> tuple[type[FieldValue], tuple[Any, ...]]:
        return (FieldValue, (self.key, self.value, self.field_type, self.error_msg))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldValue:
        return cls(
            key=str(data["key"]),
            value=data.get("value"),
            field_type=str(data.get("field_type", "ANY")),
            error_msg=data.get("error_msg"),
        )


@dataclass(frozen=True, slots=True)
class Record:
    file_name: str
    record_index: int
    pages: tuple[int, ...]
    text: str = ""
    page_count: int = 0
    class_label: str | None = None
    class_score: float | None = None
    status: RecordStatus = RecordStatus.OK
    fields: tuple[FieldValue, ...] = ()
    messages: tuple[str, ...] = ()

    def field_map(self) -> dict[str, Any]:
        return {f.key: f.value for f in self.fields}

    def evolve(
        self,
        *,
        fields: tuple[FieldValue, ...] | None = None,
        status: RecordStatus | None = None,
        messages: tuple[str, ...] | None = None,
        class_label: str | _Keep | None = KEEP,
        class_score: float | _Keep | None = KEEP,
        text: str | None = None,
    ) -> Record:
        """A copy with some attributes changed (``dataclasses.replace`` without its
        introspection: this is on the hot path of every step)."""
        return Record(
            self.file_name,
            self.record_index,
            self.pages,
            self.text if text is None else text,
            self.page_count,
            self.class_label if isinstance(class_label, _Keep) else class_label,
            self.class_score if isinstance(class_score, _Keep) else class_score,
            self.status if status is None else status,
            self.fields if fields is None else fields,
            self.messages if messages is None else messages,
        )

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        # Plain tuples: the default pickling of slotted frozen dataclasses introspects fields
        # for every record, which dominated the parent's work in a pool run.
        return (
            Record,
            (
                self.file_name,
                self.record_index,
                self.pages,
                self.text,
                self.page_count,
                self.class_label,
                self.class_score,
                self.status,
                self.fields,
                self.messages,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``.ibmsg``): everything but the text."""
        return {
            "record_index": self.record_index,
            "pages": list(self.pages),
            "class_label": self.class_label,
            "class_score": self.class_score,
            "status": self.status.value,
            "messages": list(self.messages),
            "fields": [f.to_dict() for f in self.fields],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], file_name: str, text: str, page_count: int
    ) -> Record:
        return cls(
            file_name=file_name,
            record_index=int(data["record_index"]),
            pages=tuple(int(p) for p in data.get("pages", ())),
            text=text,
            page_count=page_count,
            class_label=data.get("class_label"),
            class_score=data.get("class_score"),
            status=RecordStatus(data.get("status", "OK")),
            fields=tuple(FieldValue.from_dict(f) for f in data.get("fields", ())),
            messages=tuple(str(m) for m in data.get("messages", ())),
        )


def merge_fields(old: tuple[FieldValue, ...], new: list[FieldValue]) -> tuple[FieldValue, ...]:
    """``old`` with ``new`` applied: a field of the same key is replaced in place, others appended."""
    if not old:
        return tuple(new)
    by_key = {f.key: f for f in new}
    merged = [by_key.pop(f.key, f) for f in old]
    merged.extend(f for f in new if f.key in by_key)
    return tuple(merged)
