"""Digitizing plain text: encodings, line ends, pages, binary junk, sniffing, speed and memory."""

from __future__ import annotations

import codecs
import hashlib
import os
import time
import tracemalloc

import pytest

from flowd.engine.digitize import DigitizeSettings, digitize
from flowd.errors import DocumentError

INVOICE = "ACME Ltd            INVOICE\nInvoice No: A-17\nCafé crème    Total:   12,50 €\n"


def test_utf8_text_keeps_its_layout_and_metadata() -> None:
    data = INVOICE.encode("utf-8")
    document = digitize("inbox/invoice.txt", data)
    assert document.file_name == "inbox/invoice.txt"
    assert document.size == len(data)
    assert document.sha256 == hashlib.sha256(data).hexdigest()
    assert document.mime_type == "text/plain"
    assert document.page_count == 1
    page = document.pages[0]
    assert page.text == INVOICE
    assert page.words == ()  # a text file's grid is its layout: no boxes on the hot path
    assert not page.ocr


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + INVOICE.encode("utf-8"), INVOICE),
        (codecs.BOM_UTF16_LE + INVOICE.encode("utf-16-le"), INVOICE),
        (codecs.BOM_UTF16_BE + INVOICE.encode("utf-16-be"), INVOICE),
        (codecs.BOM_UTF32_LE + INVOICE.encode("utf-32-le"), INVOICE),
        (INVOICE.encode("utf-16-le"), INVOICE),  # no BOM, as some Windows tools write it
        (INVOICE.encode("cp1252"), INVOICE),
        ("Ärger über Öl: 5 €\n".encode("cp1252"), "Ärger über Öl: 5 €\n"),
        ("naïve façade".encode("latin-1"), "naïve façade"),
    ],
    ids=[
        "utf8-bom",
        "utf16le-bom",
        "utf16be-bom",
        "utf32le-bom",
        "utf16le-nobom",
        "cp1252",
        "cp1252-umlauts",
        "latin1",
    ],
)
def test_encodings_are_recognized(data: bytes, expected: str) -> None:
    assert digitize("a.txt", data).text == expected


def test_damaged_utf8_keeps_utf8_and_replaces_the_bad_bytes() -> None:
    data = "Größe: 10 m², Preis: 5 €".encode() + b"\xff\xfe" + " – fin".encode()
    text = digitize("a.txt", data).text
    assert text.startswith("Größe: 10 m², Preis: 5 €")
    assert text.endswith(" – fin")
    assert "\ufffd" in text


def test_bytes_undefined_in_cp1252_are_replaced_not_fatal() -> None:
    assert digitize("a.txt", b"caf\xe9 \x81 ok").text == "café \ufffd ok"


def test_line_ends_are_normalized() -> None:
    assert digitize("a.txt", b"one\r\ntwo\rthree\nfour").text == "one\ntwo\nthree\nfour"


def test_form_feeds_split_pages_and_a_trailing_one_adds_no_page() -> None:
    document = digitize("a.txt", b"page one\n\x0cpage two\n\x0cpage three\n\x0c")
    assert [p.text for p in document.pages] == ["page one\n", "page two\n", "page three\n"]
    assert [p.number for p in document.pages] == [1, 2, 3]
    assert document.text == "page one\n\fpage two\n\fpage three\n"


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4,  # a zip named .txt
        b"text with a NUL \x00 in it",
        bytes(range(1, 9)) * 200 + b"mostly control characters",
        os.urandom(4096).replace(b"\x00", b"\x01") + b"\x00",
    ],
    ids=["zip", "nul", "controls", "random"],
)
def test_binary_junk_named_txt_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentError, match="not a text file") as raised:
        digitize("junk.txt", data)
    assert raised.value.file == "junk.txt"


@pytest.mark.parametrize("name", ["empty.txt", "empty.pdf", "empty.png", "empty.docx", "empty"])
def test_zero_byte_files_are_refused(name: str) -> None:
    with pytest.raises(DocumentError, match=r"empty file \(0 bytes\)"):
        digitize(name, b"")


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("a.txt", "text/plain"),
        ("a.md", "text/markdown"),
        ("a.csv", "text/csv"),
        ("a.json", "application/json"),
        ("a.html", "text/html"),
        ("a.htm", "text/html"),
        ("a.xml", "application/xml"),
        ("A.TXT", "text/plain"),
        ("server.log", "text/plain"),  # unknown extension, but text
        ("README", "text/plain"),
    ],
)
def test_text_types_and_mime(name: str, mime: str) -> None:
    document = digitize(name, b'{"a": "b"}\n')
    assert document.mime_type == mime
    assert document.text == '{"a": "b"}\n'


@pytest.mark.parametrize(
    ("name", "message"),
    [("data.xyz", "unsupported file type '.xyz'"), ("blob", r"unsupported file type \(no ext")],
)
def test_unknown_binary_types_are_unsupported(name: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        digitize(name, b"\x00\x01\x02\x03binary\x00")


def test_a_pdf_is_recognized_by_its_magic_whatever_its_name() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "Sniffed by magic")
    document = digitize("download", bytes(pdf.output()))
    assert document.mime_type == "application/pdf"
    assert "Sniffed by magic" in document.text


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="ocr must be"):
        DigitizeSettings(ocr="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        DigitizeSettings(languages=())
    with pytest.raises(ValueError, match="not a Tesseract language"):
        DigitizeSettings(languages=("eng; rm -rf",))
    settings = DigitizeSettings(languages=["deu", "eng"])  # type: ignore[arg-type]
    assert settings.languages == ("deu", "eng")
    assert hash(settings)


def test_a_small_text_file_digitizes_in_well_under_100_microseconds() -> None:
    """The hot path: 1,500 text documents a second on two cores leaves ≪ 100 µs for this."""
    data = (INVOICE.encode("utf-8") * 40)[:2000] + b"\n"
    assert 2000 < len(data) < 2100
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            digitize("invoice.txt", data)
        best = min(best, (time.perf_counter() - start) / 200)
    assert best < 50e-6, f"{best * 1e6:.1f} µs per 2 KB text file"


def test_a_large_text_file_costs_a_few_times_its_size_in_memory() -> None:
    line = "Invoice No: A-17      Total: 12,50 €   Größe\r\n".encode()
    data = line * (20_000_000 // len(line))
    tracemalloc.start()
    try:
        document = digitize("big.txt", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert document.pages[0].text.startswith("Invoice No: A-17      Total: 12,50 €   Größe\n")
    assert peak < 5 * len(data), f"peak {peak / len(data):.1f} x the file size"
