"""Pictures known by the bytes that make them (:class:`PdfObjects`), so a letterhead OCR'd once is
recalled without rendering it — and never confused with another picture.

Most files here are written by hand, object by object, to show each rule; the transparent logos are
real PDFs from fpdf2, where the picture's lettering lives in its mask alone.
"""

from __future__ import annotations

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from fpdf import FPDF
from PIL import Image, ImageDraw

from flowd.engine.digitize.pdf_objects import PdfObjects, stream_data

BLACK = b"\x00" * 64  # the colour stream of a black logo: what makes it is its mask


def obj(number: int, dictionary: bytes, stream: bytes | None = None) -> bytes:
    if stream is None:
        return b"%d 0 obj\n%s\nendobj\n" % (number, dictionary)
    return b"%d 0 obj\n%s\nstream\n%s\nendstream\nendobj\n" % (number, dictionary, stream)


def image(mask: bytes = b"", length: bytes = b"64") -> bytes:
    return b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray " + (
        b"/BitsPerComponent 8 " + mask + b" /Length " + length + b" >>"
    )


MASK = b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 64 >>"


def pdf(*objects: bytes, saves: int = 1) -> bytes:
    """A file of ``objects`` (the structure the digest reads; no reader needs more here)."""
    trailer = b"trailer\n<< /Size 9 >>\nstartxref\n9\n%%EOF\n"
    return b"%PDF-1.4\n" + b"".join(objects) + trailer * saves


def digest(data: bytes, raw: bytes = BLACK, *, encrypted: bool = False) -> bytes | None:
    return PdfObjects(data, encrypted=encrypted).image_digest(raw)


def test_a_picture_is_named_by_its_stream_dictionary_and_mask_not_by_object_numbers() -> None:
    first = pdf(obj(4, image(b"/SMask 5 0 R"), BLACK), obj(5, MASK, b"\x01" * 64))
    renumbered = pdf(obj(12, MASK, b"\x01" * 64), obj(30, image(b"/SMask 12 0 R"), BLACK))
    assert digest(first) is not None
    assert digest(first) == digest(renumbered)


def test_another_mask_or_decode_array_is_another_picture() -> None:
    logo = pdf(obj(4, image(b"/SMask 5 0 R"), BLACK), obj(5, MASK, b"\x01" * 64))
    other_mask = pdf(obj(4, image(b"/SMask 5 0 R"), BLACK), obj(5, MASK, b"\x02" * 64))
    inverted = pdf(obj(4, image(b"/SMask 5 0 R /Decode [1 0]"), BLACK), obj(5, MASK, b"\x01" * 64))
    unmasked = pdf(obj(4, image(), BLACK))
    digests = {digest(logo), digest(other_mask), digest(inverted), digest(unmasked)}
    assert None not in digests and len(digests) == 4


def test_a_length_given_by_reference_is_followed() -> None:
    logo = obj(4, image(b"/SMask 5 0 R"), BLACK)
    mask = obj(5, MASK.replace(b"/Length 64", b"/Length 6 0 R"), b"\x01" * 64)
    assert digest(pdf(logo, mask)) is None  # no object 6: the mask cannot be measured
    assert digest(pdf(logo, mask, obj(6, b"64"))) is not None


def test_the_same_picture_stored_twice_is_one_picture() -> None:
    """As on multi-page invoices whose pages each carry their copy of the letterhead."""
    page_1, page_2 = obj(4, image(length=b"5 0 R"), BLACK), obj(9, image(length=b"10 0 R"), BLACK)
    data = pdf(page_1, obj(5, b"64"), page_2, obj(10, b"64"))
    single = pdf(obj(3, b"64"), obj(20, image(length=b"3 0 R"), BLACK))
    assert digest(data) is not None
    assert digest(data) == digest(single)


def test_one_stream_with_two_different_dictionaries_is_unknown() -> None:
    data = pdf(obj(4, image(), BLACK), obj(5, image(b"/Decode [1 0]"), BLACK))
    assert digest(data) is None


def test_what_cannot_be_read_plainly_is_unknown() -> None:
    # a mask in a compressed object stream (not in plain sight)
    assert digest(pdf(obj(4, image(b"/SMask 5 0 R"), BLACK))) is None
    # stream data that is not in the file as such: an inline image, an encrypted file
    assert digest(pdf(obj(4, image(), BLACK)), raw=b"\x07" * 64) is None
    assert digest(pdf(obj(4, image(), BLACK)), encrypted=True) is None
    # a stream that only begins with the picture's bytes
    assert digest(pdf(obj(4, image(length=b"65"), BLACK + b"\x00"))) is None


def test_an_object_changed_by_an_update_is_unknown() -> None:
    mask, update = obj(5, MASK, b"\x01" * 64), obj(5, MASK, b"\x02" * 64)
    saved_once = pdf(obj(4, image(b"/SMask 5 0 R"), BLACK), mask)
    updated = pdf(obj(4, image(b"/SMask 5 0 R"), BLACK), mask, update, saves=2)
    assert digest(saved_once) is not None
    assert digest(updated) is None


def transparent_logo_pdf(words: str) -> bytes:
    """A letterhead as fpdf2 writes an RGBA picture: black colour data, lettering in the mask."""
    logo = Image.new("RGBA", (400, 60), (0, 0, 0, 0))
    ImageDraw.Draw(logo).text((10, 10), words, fill=(0, 0, 0, 255))
    document = FPDF(unit="pt", format="A4")
    document.add_page()
    document.image(logo, x=40, y=30, w=220)
    return bytes(document.output())


def picture_of(data: bytes) -> tuple[bytes, bytes | None]:
    pdf_file = pdfium.PdfDocument(data)
    page = pdf_file[0]
    (picture,) = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))
    raw = stream_data(picture.raw)
    return raw, PdfObjects(data, encrypted=False).image_digest(raw)


def test_two_transparent_logos_with_the_same_colour_data_are_two_pictures() -> None:
    globex_raw, globex = picture_of(transparent_logo_pdf("GLOBEX CORPORATION"))
    initech_raw, initech = picture_of(transparent_logo_pdf("INITECH GMBH"))
    assert globex_raw == initech_raw  # the stream alone cannot tell them apart
    assert globex is not None and initech is not None
    assert globex != initech
    assert picture_of(transparent_logo_pdf("GLOBEX CORPORATION"))[1] == globex
