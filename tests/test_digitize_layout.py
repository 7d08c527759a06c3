"""The layout builder on its own: word boxes → text, the rules PDF and OCR pages share."""

from __future__ import annotations

import re

from flowd.engine.digitize.layout import Box, layout_page


def words(line_top: float, *items: tuple[float, str], height: float = 10.0) -> list[Box]:
    """Words on one line: ``(x0, text)``, 5 points a character."""
    return [(text, x, line_top, x + 5.0 * len(text), line_top + height) for x, text in items]


def test_nothing_gives_empty_text() -> None:
    assert layout_page([]) == ("", ())


def test_prose_is_single_spaced_and_columns_are_kept_apart() -> None:
    boxes = words(100, (50, "Invoice"), (87, "Number:"), (400, "42183017"))
    text, ordered = layout_page(boxes)
    assert text == "Invoice Number:" + " " * 55 + "42183017"
    assert [w.text for w in ordered] == ["Invoice", "Number:", "42183017"]


def test_lines_run_top_to_bottom_and_words_left_to_right_whatever_the_input_order() -> None:
    boxes = [*words(300, (50, "last")), *words(100, (200, "right"), (50, "left"))]
    text, ordered = layout_page(list(reversed(boxes)))
    assert text.splitlines()[0].split() == ["left", "right"]
    assert text.splitlines()[-1] == "last"
    assert [w.text for w in ordered] == ["left", "right", "last"]


def test_a_value_below_a_label_starts_in_its_column() -> None:
    boxes = [*words(100, (50, "Name"), (300, "Account")), *words(112, (50, "Jo"), (300, "12-34"))]
    first, second = layout_page(boxes)[0].splitlines()
    assert second.index("12-34") == first.index("Account")


def test_a_phrase_pushed_right_still_keeps_two_spaces() -> None:
    condensed = ("a-long-label-in-a-condensed-font", 0.0, 100.0, 96.0, 110.0)  # 3 pt a character
    boxes = [condensed, *words(100, (120, "value")), *words(112, (0, "x"), (20, "y"), (40, "z"))]
    assert layout_page(boxes)[0].splitlines()[0] == "a-long-label-in-a-condensed-font  value"


def test_baseline_jitter_and_superscripts_stay_on_the_line() -> None:
    boxes = [
        *words(100, (50, "Total")),
        *words(101.5, (200, "12.50")),  # jitter
        ("2", 80.0, 97.0, 83.0, 103.0),  # a raised, smaller superscript
        *words(112, (50, "next")),
    ]
    text, _ = layout_page(boxes)
    assert text.splitlines()[0].split() == ["Total", "2", "12.50"]
    assert text.splitlines()[1] == "next"


def test_a_tall_bullet_between_two_lines_goes_to_the_one_it_overlaps_most() -> None:
    boxes = [
        *words(100, (50, "Pour"), (73, "vous")),
        *words(109, (62, "Telephone")),
        ("•", 55.0, 105.0, 60.0, 122.0),  # symbol-font box: taller, centred below line one
    ]
    assert layout_page(boxes)[0].splitlines() == ["Pour vous", " • Telephone"]


def test_a_tall_word_does_not_chain_two_lines_together() -> None:
    boxes = [
        ("BIG", 10.0, 100.0, 60.0, 124.0),
        *words(100, (200, "first")),
        *words(113, (200, "second")),
    ]
    text, _ = layout_page(boxes)
    assert len(text.splitlines()) == 2
    assert text.splitlines()[1].strip() == "second"


def test_the_same_word_painted_twice_is_kept_once() -> None:
    boxes = [*words(100, (50, "Bold")), ("Bold", 50.4, 100.0, 70.4, 110.0)]
    text, ordered = layout_page(boxes)
    assert text == "Bold" and len(ordered) == 1


def test_large_vertical_gaps_become_at_most_two_blank_lines() -> None:
    boxes = [*words(100, (0, "a")), *words(112, (0, "b")), *words(140, (0, "c"))]
    boxes += words(600, (0, "d"))
    assert layout_page(boxes)[0] == "a\nb\n\nc\n\n\nd"


def test_a_typewriter_pages_wide_word_spaces_stay_single_spaces() -> None:
    """OCR of a monospaced scan: ink-tight boxes, spaces measuring about 1.5 columns."""
    boxes: list[Box] = []
    for row in range(6):
        x = 0.0
        for text in ["Thank", "you", "for", "your", "business."]:
            boxes.append((text, x, 100.0 + 12 * row, x + 4.0 * len(text), 108.0 + 12 * row))
            x += 4.0 * len(text) + 6.0  # 1.5 columns of 4 points
    assert layout_page(boxes)[0].splitlines()[0] == "Thank you for your business."


def test_on_a_page_that_is_all_table_columns_stay_apart() -> None:
    """Every gap is a column gap of 2.5 columns: the usual gap must not swallow them."""
    boxes: list[Box] = []
    for row in range(6):
        for col in range(4):
            x = col * 32.5
            boxes.append((f"{row}.{col}0", x, 100.0 + 12 * row, x + 20.0, 110.0 + 12 * row))
    first = layout_page(boxes)[0].splitlines()[0]
    assert re.fullmatch(r"0\.00 {2,}0\.10 {2,}0\.20 {2,}0\.30", first), first
