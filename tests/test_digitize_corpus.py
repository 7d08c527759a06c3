"""The real invoices of the corpus (invoice2data test files, MIT): their label/value lines.

Each key line is a regular expression that must match one line of flowd's page text — and, where
poppler's ``pdftotext -layout`` is installed, one line of its output too, so these are the pairs a
reader sees side by side, not an artefact of flowd's own layout.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flowd.engine.digitize import DigitizeSettings, digitize
from flowd.engine.document import Document

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"
NEVER = DigitizeSettings(ocr="never")

KEY_LINES = {
    "AmazonWebServices.pdf": [
        r"Invoice Number: {2,}42183017",
        r"Invoice Date: {2,}August 3 , 2014",
        r"TOTAL AMOUNT DUE ON August 3 , 2014 {2,}\$4\.11",
        r"^ ?Total for this invoice {2,}\$4\.11",
        r"^Account number:$",
    ],
    "NetpresseInvoice.pdf": [
        r"Facture n° 2022089083$",
        r"Date : 28/11/2022",
        r"Total HT : {2,}46,68 €",
        r"Total TTC : {2,}56,02 €",
        r"^ +NETPRESSE$",
    ],
    "QualityHosting.pdf": [
        r"^Rechnungsnr\. {2,}30064443 {2,}Kundennr\. {2,}47774$",
        r"^Rechnungsdatum {2,}7\. Mai 2014$",
        r"Total EUR {2,}34,73",
        r"UStId DE 232 446 240",
    ],
    "coolblue1.pdf": [
        r"^Factuurnummer: 993548900 {2,}IBAN NL50INGB0683251309$",
        r"^Factuurdatum: 19 april 2014$",
        r"^FACTUUR\. {2,}Coolblue B\.V\.$",
        r"Subtotaal {2,}€ 717,97",
        r"Exclusief BTW {2,}€ 593,36",
    ],
    "free_fiber.pdf": [
        r"^Facture n°562044387 du 02 Juillet 2015",
        r"^Total facture {2,}24\.99 {2,}5\.00 {2,}29\.99$",
        r"^FO10479674 {2,}10577874 {2,}35 RUE du logiciel libre$",
        r"Date limite de paiement le 05 Juillet 2015 {2,}29\.99 € TTC",
    ],
}

PAGES = {
    "AmazonWebServices.pdf": 1,
    "NetpresseInvoice.pdf": 1,
    "QualityHosting.pdf": 2,
    "coolblue1.pdf": 1,
    "free_fiber.pdf": 2,
}


def read(name: str) -> Document:
    return digitize(name, (CORPUS / name).read_bytes(), NEVER)


@pytest.mark.parametrize("name", sorted(KEY_LINES))
def test_label_value_pairs_are_on_one_line(name: str) -> None:
    document = read(name)
    assert document.page_count == PAGES[name]
    for pattern in KEY_LINES[name]:
        assert re.search(pattern, document.text, re.M), f"{pattern!r} in:\n{document.text}"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed")
@pytest.mark.parametrize("name", sorted(KEY_LINES))
def test_the_key_lines_are_pdftotexts_too(name: str) -> None:
    poppler = subprocess.run(
        ["pdftotext", "-layout", str(CORPUS / name), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for pattern in KEY_LINES[name]:
        if pattern.endswith("NETPRESSE$"):
            continue  # pdftotext puts the NETPRESSE footer first and indents differently
        loose = pattern.replace(" {2,}", " +").replace("^ ?", "^ *").replace("^", "^ *")
        assert re.search(loose, poppler, re.M), f"{loose!r} not in pdftotext's output"


@pytest.mark.parametrize("name", sorted(KEY_LINES))
def test_the_expected_invoice_number_is_in_the_text(name: str) -> None:
    expected = json.loads((CORPUS / name).with_suffix(".json").read_text(encoding="utf-8"))
    assert expected[0]["invoice_number"] in read(name).text


def test_a_value_under_its_header_starts_in_the_header_column() -> None:
    lines = read("free_fiber.pdf").pages[0].text.splitlines()
    header = next(line for line in lines if line.startswith("Numéro de ligne"))
    values = lines[lines.index(header) + 1]
    assert values.index("10577874") == header.index("Id.client")
    assert values.index("FO10479674") == header.index("Numéro")


def test_word_boxes_are_inside_their_pages() -> None:
    for name in KEY_LINES:
        for page in read(name).pages:
            assert page.words
            for word in page.words:
                assert -1 <= word.x0 < word.x1 <= page.width + 1, word
                assert -1 <= word.y0 < word.y1 <= page.height + 1, word
