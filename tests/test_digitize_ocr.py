"""OCR: images, scanned PDFs, pictures on text pages, and a missing Tesseract or language.

Images are drawn here with Pillow (DejaVu Sans when installed, else Pillow's own font) so each test
shows what it reads. Tests that run Tesseract skip when it is not installed; the ones about a
missing Tesseract run everywhere.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pypdfium2 as pdfium
import pytesseract
import pytest
from conftest import on_rotated_page
from fpdf import FPDF
from fpdf.enums import TextMode
from PIL import Image, ImageDraw, ImageFont

from flowd.engine.digitize import DigitizeSettings, digitize, pdf_ocr
from flowd.engine.digitize.ocr import forget_tesseract, tesseract_path
from flowd.engine.digitize.pdf_ocr import forget_pictures
from flowd.errors import DocumentError, MissingDependencyError

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"
AUTO = DigitizeSettings(ocr="auto")
NEVER = DigitizeSettings(ocr="never")
ALWAYS = DigitizeSettings(ocr="always")

requires_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="Tesseract is not installed (Debian package tesseract-ocr)",
)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", "DejaVu Sans"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        found = ""
    if found.endswith((".ttf", ".otf")) and Path(found).exists():
        return ImageFont.truetype(found, size)
    return ImageFont.load_default(size=size)


def draw(
    texts: list[tuple[int, int, str]],
    size: tuple[int, int] = (2480, 900),
    font_px: int = 42,
    mode: str = "L",
    background: int | tuple[int, ...] = 255,
    ink: int | tuple[int, ...] = 0,
) -> Image.Image:
    """An image at 300 dpi with black text at pixel positions."""
    image = Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    face = font(font_px)
    for x, y, text in texts:
        pen.text((x, y), text, fill=ink, font=face)
    return image


def encode(image: Image.Image, kind: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, dpi=(300, 300), **options)
    return buffer.getvalue()


INVOICE_IMAGE = [
    (120, 100, "NORTHWIND TRADERS"),
    (120, 300, "Invoice Number:"),
    (1700, 300, "NW-4711"),
    (120, 400, "Invoice Date:"),
    (1700, 400, "12 March 2024"),
    (120, 700, "Total Due:"),
    (1700, 700, "987.65 EUR"),
]


@requires_tesseract
def test_a_png_is_read_by_ocr_with_its_layout() -> None:
    document = digitize("scan.png", encode(draw(INVOICE_IMAGE)))
    assert document.mime_type == "image/png"
    page = document.pages[0]
    assert page.ocr
    assert page.width == pytest.approx(2480 * 72 / 300, abs=0.5)
    assert page.height == pytest.approx(900 * 72 / 300, abs=0.5)
    assert "NORTHWIND TRADERS" in page.text
    assert re.search(r"^Invoice Number: {2,}NW-4711$", page.text, re.M), page.text
    assert re.search(r"^Total Due: {2,}987\.65 EUR$", page.text, re.M), page.text
    nw = next(w for w in page.words if w.text == "NW-4711")
    assert nw.x0 == pytest.approx(1700 * 72 / 300, abs=3)  # boxes in points
    assert nw.y0 == pytest.approx(300 * 72 / 300, abs=6)


@requires_tesseract
def test_a_jpeg_and_a_small_image_are_read() -> None:
    jpeg = digitize("photo.jpg", encode(draw(INVOICE_IMAGE).convert("RGB"), "JPEG", quality=85))
    assert jpeg.mime_type == "image/jpeg"
    assert "NW-4711" in jpeg.text
    small = draw([(10, 10, "Receipt 5521"), (10, 40, "Paid in full")], (320, 80), font_px=18)
    text = digitize("small.png", encode(small)).text  # enlarged before OCR
    assert "Receipt 5521" in text
    assert "Paid in full" in text


@requires_tesseract
def test_a_multipage_tiff_gives_one_page_per_frame() -> None:
    first = draw([(120, 100, "First page ALPHA")], (1600, 400))
    second = draw([(120, 100, "Second page BRAVO")], (1600, 400))
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second], dpi=(300, 300))
    document = digitize("fax.tiff", buffer.getvalue())
    assert document.mime_type == "image/tiff"
    assert [p.number for p in document.pages] == [1, 2]
    assert "ALPHA" in document.pages[0].text and "BRAVO" in document.pages[1].text


@requires_tesseract
def test_the_corpus_receipt_image_reads_well_enough() -> None:
    text = digitize("oyo.png", (CORPUS / "oyo.png").read_bytes()).text
    assert "IBZY2087" in text
    assert "31/12/2017" in text
    assert re.search(r"Grand Total +Rs 1939", text), text


def test_an_image_with_ocr_never_is_an_error() -> None:
    with pytest.raises(DocumentError, match="image needs OCR but ocr is 'never'"):
        digitize("scan.png", encode(draw(INVOICE_IMAGE)), NEVER)


def test_a_corrupt_image_is_a_document_error() -> None:
    data = encode(draw(INVOICE_IMAGE))
    with pytest.raises(DocumentError, match="not a valid image"):
        digitize("cut.png", data[: len(data) // 2])
    with pytest.raises(DocumentError, match="not a valid image"):
        digitize("noise.jpg", b"not an image at all, just words")


@pytest.mark.parametrize("how", ["command", "path"])
def test_missing_tesseract_fails_only_files_that_need_ocr(
    how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if how == "command":
        monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "tesseract"))
    else:
        monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="install the Debian package 'tesseract-ocr'"):
        digitize("scan.png", encode(draw(INVOICE_IMAGE)))
    with pytest.raises(MissingDependencyError, match="tesseract-ocr") as raised:
        digitize("scan.pdf", scanned_pdf(draw(INVOICE_IMAGE)))
    assert isinstance(raised.value, DocumentError)  # callers catching DocumentError see it too
    # what needs no OCR still works, pictures on text pages are then skipped
    assert digitize("a.txt", b"plain text").text == "plain text"
    aws = digitize("aws.pdf", (CORPUS / "AmazonWebServices.pdf").read_bytes(), AUTO)
    assert "Invoice Number:" in aws.text and not aws.pages[0].ocr
    assert digitize("scan.pdf", scanned_pdf(draw(INVOICE_IMAGE)), NEVER).text == ""


def test_tesseract_is_found_once_but_a_missing_one_is_looked_for_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Searching PATH costs a stat per folder on every PDF; installing Tesseract must still heal
    a retry without restarting the workers."""
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "tesseract")
    monkeypatch.setenv("PATH", str(tmp_path))
    program = tmp_path / "tesseract"
    try:
        assert tesseract_path() is None
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
        assert tesseract_path() == str(program)  # installed since: found
        program.unlink()
        assert tesseract_path() == str(program)  # remembered, not searched again
        forget_tesseract()
        assert tesseract_path() is None
    finally:
        forget_tesseract()


@requires_tesseract
def test_a_language_that_is_not_installed_is_named_with_its_package() -> None:
    settings = DigitizeSettings(languages=("eng", "xyz"))
    with pytest.raises(DocumentError, match=r"'xyz'.*Debian package 'tesseract-ocr-xyz'"):
        digitize("scan.png", encode(draw(INVOICE_IMAGE)), settings)


def scanned_pdf(image: Image.Image) -> bytes:
    """An image-only PDF: the image fills an A4 page, as a scanner makes it."""
    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=595.28)
    return bytes(pdf.output())


@requires_tesseract
def test_a_scanned_pdf_is_read_under_auto_and_empty_under_never() -> None:
    page_image = draw(INVOICE_IMAGE, (2480, 3508))  # A4 at 300 dpi
    data = scanned_pdf(page_image)
    auto = digitize("scan.pdf", data, AUTO)
    assert auto.pages[0].ocr
    assert re.search(r"^Invoice Number: {2,}NW-4711$", auto.text, re.M), auto.text
    nw = next(w for w in auto.pages[0].words if w.text == "NW-4711")
    assert nw.x0 == pytest.approx(1700 * 72 / 300, abs=3)
    never = digitize("scan.pdf", data, NEVER)
    assert never.page_count == 1 and never.text == "" and not never.pages[0].ocr


def text_page_with_logo(logo: Image.Image, overlap_text: bool = False) -> bytes:
    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.image(logo, x=40, y=30, w=220)  # a letterhead logo: its words are only in the picture
    pdf.set_font("Helvetica", size=11)
    if overlap_text:  # printed on the picture, just where the picture says it too
        pdf.set_font("Helvetica", size=13)
        pdf.text(47.5, 50.5, "SHARED")
    pdf.text(40, 160, "Invoice Number:")
    pdf.text(400, 160, "T-1001")
    pdf.text(40, 180, "Total:")
    pdf.text(400, 180, "42.00")
    return bytes(pdf.output())


LOGO = [(30, 40, "GLOBEX CORPORATION")]


@requires_tesseract
def test_words_of_a_logo_on_a_text_page_join_the_page_under_auto() -> None:
    data = text_page_with_logo(draw(LOGO, (1000, 140), font_px=56))
    auto = digitize("letterhead.pdf", data, AUTO)
    assert auto.pages[0].ocr
    assert auto.text.splitlines()[0].strip() == "GLOBEX CORPORATION", auto.text
    assert re.search(r"^Invoice Number: {2,}T-1001$", auto.text, re.M)
    globex = next(w for w in auto.pages[0].words if w.text == "GLOBEX")
    assert 40 <= globex.x0 < 60 and 30 <= globex.y0 < 60  # at the picture's place
    never = digitize("letterhead.pdf", data, NEVER)
    assert "GLOBEX" not in never.text and not never.pages[0].ocr


@requires_tesseract
def test_a_transparent_logo_is_read_on_white() -> None:
    """Letters drawn by the alpha channel alone (black on transparent black) must not vanish."""
    clear, black = (0, 0, 0, 0), (0, 0, 0, 255)
    logo = draw(LOGO, (1000, 140), font_px=56, mode="RGBA", background=clear, ink=black)
    assert "GLOBEX CORPORATION" in digitize("alpha.pdf", text_page_with_logo(logo), AUTO).text


@requires_tesseract
def test_transparent_logos_of_one_size_are_not_mistaken_for_each_other() -> None:
    """Both are black pixels of one size, told apart by their masks alone: the memo of pictures
    must not recall one for the other."""
    clear, black = (0, 0, 0, 0), (0, 0, 0, 255)
    globex = draw(LOGO, (1000, 140), font_px=56, mode="RGBA", background=clear, ink=black)
    initech = draw(
        [(30, 40, "INITECH LIMITED")],
        (1000, 140),
        font_px=56,
        mode="RGBA",
        background=clear,
        ink=black,
    )
    first = digitize("globex.pdf", text_page_with_logo(globex), AUTO).text
    second = digitize("initech.pdf", text_page_with_logo(initech), AUTO).text
    assert "GLOBEX" in first and "INITECH" not in first, first
    assert "INITECH" in second and "GLOBEX" not in second, second


def invoice_with_logo(logo: Image.Image, number: str) -> bytes:
    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.image(logo, x=40, y=30, w=220)
    pdf.set_font("Helvetica", size=11)
    pdf.text(40, 160, "Invoice Number:")
    pdf.text(400, 160, number)
    return bytes(pdf.output())


class Spy:
    """Counts the calls of one of pdf_ocr's functions, which still does its work."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls = 0
        real = getattr(pdf_ocr, name)

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(pdf_ocr, name, counted)


@requires_tesseract
def test_a_letterhead_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same letterhead comes on every invoice of an issuer: its words are recalled, without
    rendering the picture again, until the memo is forgotten."""
    rendered, read = Spy(monkeypatch, "_render_picture"), Spy(monkeypatch, "recognize")
    logo = draw(LOGO, (1000, 140), font_px=56)
    forget_pictures()
    first = digitize("t-1001.pdf", invoice_with_logo(logo, "T-1001"), AUTO)
    second = digitize("t-1002.pdf", invoice_with_logo(logo, "T-1002"), AUTO)
    assert (rendered.calls, read.calls) == (1, 1)
    assert second.text.splitlines()[0].strip() == "GLOBEX CORPORATION", second.text
    assert second.text == first.text.replace("T-1001", "T-1002")
    assert second.pages[0].words[:2] == first.pages[0].words[:2]  # at the same place
    forget_pictures()
    digitize("t-1003.pdf", invoice_with_logo(logo, "T-1003"), AUTO)
    assert (rendered.calls, read.calls) == (2, 2)


@requires_tesseract
def test_a_letterhead_on_every_page_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    read = Spy(monkeypatch, "recognize")
    forget_pictures()
    quality = digitize("qh.pdf", (CORPUS / "QualityHosting.pdf").read_bytes(), AUTO)
    assert all("QualityHosting" in p.text.splitlines()[0] for p in quality.pages)
    assert quality.page_count == 2 and read.calls == 1


@requires_tesseract
def test_words_already_in_the_text_layer_are_not_repeated() -> None:
    logo = draw([(30, 40, "SHARED")], (1000, 140), font_px=56)
    text = digitize("overlap.pdf", text_page_with_logo(logo, overlap_text=True), AUTO).text
    assert text.count("SHARED") == 1, text


@requires_tesseract
def test_ocr_always_reads_every_page_from_its_pixels() -> None:
    data = text_page_with_logo(draw(LOGO, (1000, 140), font_px=56))
    document = digitize("always.pdf", data, ALWAYS)
    assert document.pages[0].ocr
    assert "GLOBEX" in document.text
    assert re.search(r"Invoice Number: {2,}T-1001", document.text), document.text


@requires_tesseract
def test_the_corpus_logos_are_read_under_auto() -> None:
    """Issuer names that only the letterhead pictures carry (checked against pdfimages)."""
    aws = digitize("aws.pdf", (CORPUS / "AmazonWebServices.pdf").read_bytes(), AUTO)
    head = aws.pages[0].text.splitlines()
    assert head[0].strip() == "amazon"  # the logo, left of and above the title line
    assert head[1].strip() == "Amazon Web Services Invoice"
    assert head[2].split()[0] == "webservices”"  # sic
    coolblue = digitize("coolblue.pdf", (CORPUS / "coolblue1.pdf").read_bytes(), AUTO).text
    assert re.search(r"^ +cool\n.* +blue$", coolblue, re.M), coolblue  # at the bottom right
    quality = digitize("qh.pdf", (CORPUS / "QualityHosting.pdf").read_bytes(), AUTO)
    assert all("QualityHosting" in p.text.splitlines()[0] for p in quality.pages)


@requires_tesseract
def test_a_logo_inside_a_form_xobject_is_found_where_it_is_shown() -> None:
    """Pages imported from other PDFs keep their pictures inside form XObjects (here scaled)."""
    source = pdfium.PdfDocument(text_page_with_logo(draw(LOGO, (1000, 140), font_px=56)))
    target = pdfium.PdfDocument.new()
    form = source.page_as_xobject(0, target).as_pageobject()
    form.set_matrix(pdfium.PdfMatrix(0.8, 0, 0, 0.8, 60, 100))
    page = target.new_page(595.28, 841.89)
    page.insert_obj(form)
    page.gen_content()
    buffer = io.BytesIO()
    target.save(buffer)
    document = digitize("imported.pdf", buffer.getvalue(), AUTO)
    globex = next(w for w in document.pages[0].words if w.text == "GLOBEX")
    # the logo's top-left (40, 30) on the source page, scaled by 0.8 and moved by (60, 100)
    # (in PDF space, y up: 841.89 - 0.8 * (841.89 - 30) - 100 from the top)
    assert globex.x0 == pytest.approx(60 + 0.8 * 47.4, abs=4)
    assert globex.y0 == pytest.approx(841.89 - 100 - 0.8 * (841.89 - 41), abs=4)
    assert "Invoice Number:" in document.text


@requires_tesseract
def test_a_logo_on_a_page_with_rotate_is_read_upright_at_its_displayed_place() -> None:
    """The page is drawn turned on its sheet and shown upright by ``/Rotate 90``."""
    original = text_page_with_logo(draw(LOGO, (1000, 140), font_px=56))
    width, _height = pdfium.PdfDocument(original)[0].get_size()
    document = digitize("rotated-letterhead.pdf", on_rotated_page(original), AUTO)
    assert document.pages[0].width == pytest.approx(width, abs=0.5)
    assert document.text.splitlines()[0].strip() == "GLOBEX CORPORATION", document.text
    globex = next(w for w in document.pages[0].words if w.text == "GLOBEX")
    assert globex.x0 == pytest.approx(47.4, abs=4) and globex.y0 == pytest.approx(41, abs=4)


@requires_tesseract
def test_a_scan_that_already_has_an_invisible_ocr_layer_is_not_read_again() -> None:
    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.image(draw(INVOICE_IMAGE, (2480, 3508)), x=0, y=0, w=595.28)
    pdf.set_font("Helvetica", size=10)
    pdf.text_mode = TextMode.INVISIBLE  # as OCRmyPDF and scanners' OCR write it
    pdf.text(29, 82, "Invoice Number:")
    pdf.text(408, 82, "NW-4711")
    document = digitize("ocrd.pdf", bytes(pdf.output()), AUTO)
    assert not document.pages[0].ocr
    assert re.fullmatch(r"Invoice Number: {2,}NW-4711", document.text)
