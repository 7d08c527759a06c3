"""Digitizing Word ``.docx`` files, made here with python-docx."""

from __future__ import annotations

import io
import re
import zipfile

import docx
import pytest

from flowd.engine.digitize import digitize
from flowd.engine.digitize.sniff import DOCX_MIME
from flowd.errors import DocumentError


def save(document: object) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)  # type: ignore[attr-defined]
    return buffer.getvalue()


def invoice_docx() -> bytes:
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "Initech GmbH - Letterhead"
    document.add_heading("Invoice", level=1)
    document.add_paragraph("Invoice No: D-314")
    table = document.add_table(rows=3, cols=3)
    for row, cells in enumerate(
        [
            ("Item", "Quantity", "Amount"),
            ("Stapler", "2", "19.90"),
            ("Paper, A4 box", "10", "45.00"),
        ]
    ):
        for col, text in enumerate(cells):
            table.cell(row, col).text = text
    document.add_paragraph("Total: 64.90 EUR")
    document.sections[0].footer.paragraphs[0].text = "Page footer"
    return save(document)


def test_paragraphs_and_tables_in_document_order() -> None:
    result = digitize("invoice.docx", invoice_docx())
    assert result.mime_type == DOCX_MIME
    assert result.page_count == 1
    lines = result.text.splitlines()
    assert lines[0] == "Initech GmbH - Letterhead"
    assert lines[1:3] == ["Invoice", "Invoice No: D-314"]
    assert re.fullmatch(r"Item {3,}Quantity {3,}Amount", lines[3])
    assert re.fullmatch(r"Stapler {3,}2 {3,}19\.90", lines[4])
    assert lines[5].startswith("Paper, A4 box   10")
    assert lines[6:] == ["Total: 64.90 EUR", "Page footer"]
    # a table row is one line, and a cell starts under its header cell
    assert lines[4].index("19.90") == lines[3].index("Amount")
    assert lines[5].index("10") == lines[3].index("Quantity")


def test_words_get_boxes_on_a_character_grid() -> None:
    page = digitize("invoice.docx", invoice_docx()).pages[0]
    words = {w.text: w for w in page.words}
    amount, value = words["Amount"], words["19.90"]
    assert amount.x0 == value.x0  # same column
    assert value.y0 > amount.y0
    assert page.width > 0 and page.height > 0


def test_merged_cells_are_written_once() -> None:
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Customer"
    table.cell(0, 2).text = "C-9"
    tall = table.cell(1, 0).merge(table.cell(1, 1))
    tall.text = "Address"
    table.cell(1, 2).text = "Main Street 1"
    lines = digitize("merged.docx", save(document)).text.splitlines()
    assert [line.split() for line in lines] == [
        ["Customer", "C-9"],
        ["Address", "Main", "Street", "1"],
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04 this zip is broken",
        b"definitely not a word document \x00\x01",
    ],
    ids=["broken-zip", "junk"],
)
def test_a_corrupt_docx_is_a_document_error(data: bytes) -> None:
    with pytest.raises(DocumentError, match=r"not a valid \.docx"):
        digitize("broken.docx", data)


def test_a_zip_without_a_word_document_is_a_document_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(DocumentError, match=r"not a valid \.docx"):
        digitize("other.docx", buffer.getvalue())


def test_a_docx_under_another_name_is_recognized() -> None:
    assert digitize("download.bin", invoice_docx()).mime_type == DOCX_MIME
