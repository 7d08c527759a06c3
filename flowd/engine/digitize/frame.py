"""Where a PDF page's user space lands on the page as a reader sees it.

PDF coordinates have their origin at the bottom left and ``y`` growing upwards, and a page may
carry a ``/Rotate`` of 90, 180 or 270 degrees (clockwise) that viewers apply when they show it.
Documents store boxes as displayed: points, origin at the top left of the visible (crop) box,
``y`` growing downwards. A :class:`PageFrame` does that conversion for one page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PageFrame:
    """The visible box of a page in user space (``left, bottom, right, top``) and its rotation."""

    left: float
    bottom: float
    right: float
    top: float
    rotation: int = 0

    @property
    def width(self) -> float:
        """Displayed width in points."""
        if self.rotation in (90, 270):
            return self.top - self.bottom
        return self.right - self.left

    @property
    def height(self) -> float:
        """Displayed height in points."""
        if self.rotation in (90, 270):
            return self.right - self.left
        return self.top - self.bottom

    def to_display(
        self, left: float, bottom: float, right: float, top: float
    ) -> tuple[float, float, float, float]:
        """A user-space rectangle as displayed ``(x0, y0, x1, y1)``, top-left origin."""
        rotation = self.rotation
        if rotation == 0:
            return left - self.left, self.top - top, right - self.left, self.top - bottom
        if rotation == 90:
            return bottom - self.bottom, left - self.left, top - self.bottom, right - self.left
        if rotation == 180:
            return self.right - right, bottom - self.bottom, self.right - left, top - self.bottom
        return self.top - top, self.right - right, self.top - bottom, self.right - left

    def contains(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether a displayed box's centre is on the visible page.

        Text outside the crop box is not shown (a generator's page footer placed just below the
        page, seen in the corpus), so it is not read either.
        """
        x2, y2 = x0 + x1, y0 + y1  # twice the centre
        return 0.0 <= x2 <= 2 * self.width and 0.0 <= y2 <= 2 * self.height
