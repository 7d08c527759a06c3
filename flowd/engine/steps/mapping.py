"""``map_records``: one record per document (default) or one per page."""

from __future__ import annotations

from flowd.engine.document import Document
from flowd.engine.records import Record


def document_records(file_name: str, doc: Document) -> list[Record]:
    """The single record of a digitized document, before any ``map_records``."""
    pages = tuple(p.number for p in doc.pages)
    return [Record(file_name, 0, pages, doc.text, doc.page_count)]


def map_records(mode: str, records: list[Record], doc: Document) -> list[Record]:
    """Split document records into page records (``page``) or keep them (``document``)."""
    if mode == "document":
        return records
    out: list[Record] = []
    by_number = {p.number: p for p in doc.pages}
    for rec in records:
        for number in rec.pages:
            page = by_number[number]
            out.append(
                Record(
                    rec.file_name,
                    len(out),
                    (number,),
                    page.text,
                    doc.page_count,
                    rec.class_label,
                    rec.class_score,
                    rec.status,
                    rec.fields,
                    rec.messages,
                )
            )
    return out


def text_of(doc: Document, pages: tuple[int, ...]) -> str:
    """The text a record covering ``pages`` sees (pages joined by form feeds)."""
    if len(pages) == doc.page_count:
        return doc.text
    by_number = {p.number: p.text for p in doc.pages}
    return "\f".join(by_number[n] for n in pages if n in by_number)
