"""Digitizing PDFs with a text layer: layout text, word boxes, rotation, damaged/encrypted files.

The PDFs are made here with fpdf2 (points as units), so each test shows the page it reads.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from conftest import on_rotated_page
from fpdf import FPDF

from flowd.engine.digitize import DigitizeSettings, digitize
from flowd.engine.document import Document
from flowd.errors import DocumentError

NEVER = DigitizeSettings(ocr="never")
CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"

Text = tuple[float, float, str]  # x, baseline y (points from the top), text


def make_pdf(*pages: Iterable[Text], size: float = 11, orientation: str = "P") -> bytes:
    pdf = FPDF(unit="pt", format="A4", orientation=orientation)
    pdf.set_font("Helvetica", size=size)
    for texts in pages:
        pdf.add_page()
        for x, y, text in texts:
            pdf.text(x, y, text)
    return bytes(pdf.output())


def lines(document: Document, page: int = 0) -> list[str]:
    return document.pages[page].text.splitlines()


def line_with(document: Document, needle: str, page: int = 0) -> str:
    found = [line for line in lines(document, page) if needle in line]
    assert found, f"{needle!r} not in:\n{document.pages[page].text}"
    return found[0]


def test_a_label_and_the_value_far_to_its_right_share_one_line() -> None:
    data = make_pdf(
        [
            (40, 80, "ACME Ltd"),
            (40, 120, "Invoice Number:"),
            (450, 120, "INV-2024-001"),
            (40, 140, "Invoice Date:"),
            (450, 140, "3 May 2024"),
            (40, 400, "Total due:"),
            (450, 401.5, "1,234.56 EUR"),  # a baseline 1.5 pt off: jitter, same line
        ]
    )
    document = digitize("two-columns.pdf", data, NEVER)
    assert re.search(r"^Invoice Number: {2,}INV-2024-001$", document.text, re.M)
    assert re.search(r"^Invoice Date: {2,}3 May 2024$", document.text, re.M)
    assert re.search(r"^Total due: {2,}1,234\.56 EUR$", document.text, re.M)
    # the columns line up: the values start in one column
    assert line_with(document, "INV-2024").index("INV") == line_with(document, "3 May").index("3")


def test_a_value_printed_under_its_label_starts_in_the_label_column() -> None:
    data = make_pdf(
        [
            (40, 100, "Bill to:"),
            (300, 100, "Customer ID"),
            (40, 114, "Jane Doe"),
            (300, 114, "C-00042"),
            (300, 128, "Net 30"),
        ]
    )
    document = digitize("below.pdf", data, NEVER)
    header = line_with(document, "Customer ID")
    value = line_with(document, "C-00042")
    assert value.index("C-00042") == header.index("Customer ID")
    assert value.startswith("Jane Doe")
    assert line_with(document, "Net 30").index("Net 30") == header.index("Customer ID")


def test_pages_come_out_as_pages_with_their_own_text() -> None:
    data = make_pdf(*[[(50, 60, f"Page {n} of 3"), (50, 700, f"footer {n}")] for n in (1, 2, 3)])
    document = digitize("three.pdf", data, NEVER)
    assert document.page_count == 3
    assert document.mime_type == "application/pdf"
    for number, page in enumerate(document.pages, start=1):
        assert page.number == number
        assert page.text.splitlines()[0] == f"Page {number} of 3"
        assert page.text.splitlines()[-1] == f"footer {number}"
        assert page.width == pytest.approx(595.28, abs=0.1)
        assert page.height == pytest.approx(841.89, abs=0.1)
        assert not page.ocr
    assert document.text.count("\f") == 2


def test_words_keep_their_boxes_in_points_from_the_top_left() -> None:
    document = digitize("boxes.pdf", make_pdf([(100, 200, "Hello"), (300, 500, "World")]), NEVER)
    words = {w.text: w for w in document.pages[0].words}
    hello, world = words["Hello"], words["World"]
    assert hello.x0 == pytest.approx(100, abs=1)
    assert hello.y0 < 200 < hello.y1 + 3  # the baseline is near the box's bottom
    assert hello.y0 > 185 and hello.y1 < 205
    assert hello.x1 - hello.x0 == pytest.approx(26.9, abs=2)  # "Hello" in 11 pt Helvetica
    assert world.x0 == pytest.approx(300, abs=1) and 485 < world.y0 < 500
    assert [w.text for w in document.pages[0].words] == ["Hello", "World"]  # reading order
    again = Document.from_dict(document.to_dict())
    assert again.pages[0].words[0].text == "Hello"
    assert again.pages[0].text == document.pages[0].text


def test_a_superscript_stays_on_its_line() -> None:
    pdf = FPDF(unit="pt")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.set_xy(40, 100)
    pdf.write(text="Area 25 m")
    pdf.char_vpos = "SUP"
    pdf.write(text="2")
    pdf.char_vpos = "LINE"
    pdf.write(text="   Price 10 EUR")
    pdf.text(40, 140, "next line")
    document = digitize("sup.pdf", bytes(pdf.output()), NEVER)
    assert lines(document)[0].startswith("Area 25 m2")
    assert "Price 10 EUR" in lines(document)[0]
    assert lines(document)[-1] == "next line"


def test_a_page_with_rotate_reads_as_displayed() -> None:
    landscape = make_pdf(
        [(50, 60, "Top line"), (50, 90, "Invoice No:"), (700, 90, "R-90")], orientation="L"
    )
    document = digitize("rotated.pdf", on_rotated_page(landscape), NEVER)
    page = document.pages[0]
    assert page.width == pytest.approx(841.89, abs=0.1)  # displayed in landscape
    assert page.height == pytest.approx(595.28, abs=0.1)
    assert re.fullmatch(r"Top line\n+Invoice No: {2,}R-90", page.text)
    top = next(w for w in page.words if w.text == "Top")
    assert top.x0 == pytest.approx(50, abs=1) and 45 < top.y0 < 60


def test_upright_text_on_a_page_with_rotate_is_turned_back_to_read() -> None:
    source = pdfium.PdfDocument(make_pdf([(50, 60, "Top line"), (50, 90, "Second line")]))
    source[0].set_rotation(90)
    buffer = io.BytesIO()
    source.save(buffer)
    document = digitize("sideways.pdf", buffer.getvalue(), NEVER)
    assert lines(document) == ["Top line", "Second line"]


def test_text_printed_sideways_on_a_portrait_page_is_turned_to_read() -> None:
    pdf = FPDF(unit="pt")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    with pdf.rotation(90, 300, 400):
        for row, label in enumerate(
            ["Item        Qty        Amount", "Widget        2        10.00"]
        ):
            pdf.text(300, 400 + 16 * row, label)
    document = digitize("sideways.pdf", bytes(pdf.output()), NEVER)
    text_lines = lines(document)
    assert re.fullmatch(r"Item +Qty +Amount", text_lines[0])
    assert re.fullmatch(r"Widget +2 +10\.00", text_lines[1])
    page = document.pages[0]
    assert page.width > page.height  # the page is read turned


def test_a_blank_page_has_empty_text() -> None:
    data = make_pdf([(50, 60, "first")], [], [(50, 60, "third")])
    document = digitize("blank.pdf", data, DigitizeSettings(ocr="auto"))
    assert [p.text for p in document.pages] == ["first", "", "third"]


def test_a_truncated_pdf_is_a_document_error() -> None:
    data = (CORPUS / "AmazonWebServices.pdf").read_bytes()
    with pytest.raises(DocumentError, match="not a valid PDF: the file is damaged or truncated"):
        digitize("half.pdf", data[: len(data) // 2])


def test_random_bytes_named_pdf_are_a_document_error() -> None:
    with pytest.raises(DocumentError, match="not a valid PDF: no %PDF header"):
        digitize("random.pdf", os.urandom(2048))
    with pytest.raises(DocumentError, match="not a valid PDF"):
        digitize("garbage.pdf", b"%PDF-1.7\n" + os.urandom(2048))


def test_an_encrypted_pdf_is_a_document_error() -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    with pytest.raises(DocumentError, match=r"PDF is encrypted \(password protected\)") as raised:
        digitize("locked.pdf", bytes(pdf.output()))
    assert raised.value.file == "locked.pdf"


def test_a_pdf_with_only_an_owner_password_opens() -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "printable but not editable")
    pdf.set_encryption(owner_password="owner")
    assert digitize("restricted.pdf", bytes(pdf.output()), NEVER).text == (
        "printable but not editable"
    )


def test_a_pdf_without_pages_is_a_document_error() -> None:
    buffer = io.BytesIO()
    pdfium.PdfDocument.new().save(buffer)
    with pytest.raises(DocumentError, match="PDF has no pages"):
        digitize("empty.pdf", buffer.getvalue())


def test_ligatures_are_spelled_out() -> None:
    pdf = FPDF(unit="pt")
    pdf.add_page()
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.exists():
        pytest.skip("DejaVu Sans is not installed (Debian package fonts-dejavu-core)")
    pdf.add_font("DejaVu", fname=str(font))
    pdf.set_font("DejaVu", size=12)
    pdf.text(40, 100, "Pro\ufb01t of\ufb02ine")
    assert digitize("lig.pdf", bytes(pdf.output()), NEVER).text == "Profit offline"


def garbled_pdf() -> bytes:
    """A PDF whose font lost its ``/ToUnicode`` map: its text layer is glyph numbers."""
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.exists():
        pytest.skip("DejaVu Sans is not installed (Debian package fonts-dejavu-core)")
    pdf = FPDF(unit="pt")
    pdf.add_page()
    pdf.add_font("DejaVu", fname=str(font))
    pdf.set_font("DejaVu", size=28)
    pdf.text(40, 100, "Invoice Number: G-77")
    data = bytes(pdf.output())
    assert data.count(b"/ToUnicode") == 1
    return data.replace(b"/ToUnicode", b"/ToUnicodX")


def test_a_text_layer_of_unmapped_glyphs_is_not_passed_off_as_text() -> None:
    assert digitize("garbled.pdf", garbled_pdf(), NEVER).text == ""


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed")
def test_a_text_layer_of_unmapped_glyphs_is_read_by_ocr_under_auto() -> None:
    document = digitize("garbled.pdf", garbled_pdf(), DigitizeSettings(ocr="auto"))
    assert document.pages[0].ocr
    assert "Invoice Number: G-77" in document.text


def test_a_pdf_header_after_some_junk_is_still_a_pdf() -> None:
    """PDF readers accept up to 1 KiB before ``%PDF-`` (mail gateways and servers add some)."""
    data = b"junk added by a mail gateway\r\n" + make_pdf([(40, 60, "still readable")])
    document = digitize("prefixed.pdf", data, NEVER)
    assert document.mime_type == "application/pdf"
    assert document.text == "still readable"
