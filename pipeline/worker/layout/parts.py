"""The copy as the planner sees it: structured parts, emphasis markup stripped, part sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.worker.layout.geometry import BADGE_EM, CTA_EM, PRICE_EM, SUB_EM

_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|==(.+?)==", re.DOTALL)


def plain_copy(text: str) -> str:
    """The copy without its emphasis markers (``**bold**``, ``==highlight==``): what is drawn."""
    return _EMPHASIS.sub(lambda m: plain_copy(m.group(1) or m.group(2)), text)


@dataclass(frozen=True)
class CopyParts:
    """Structured copy: the headline and the optional subline, price, badge and call to action
    (each may carry emphasis markup; sizes are estimated on the plain text)."""

    headline: str
    subline: str = ""
    price: str = ""
    badge: str = ""
    cta: str = ""

    def texts(self) -> list[str]:
        """The non-empty parts, marked up as given, headline first."""
        return [t for t in (self.headline, self.subline, self.price, self.badge, self.cta) if t]

    def plain(self) -> str:
        """All the drawn text, one part a line (for script detection and font stacks)."""
        return "\n".join(plain_copy(t) for t in self.texts())


@dataclass(frozen=True)
class PartSizes:
    """Font sizes of the parts for a headline size (the template and the estimate share them)."""

    headline: int
    subline: int
    price: int
    badge: int
    cta: int

    @staticmethod
    def of(font_px: int, fmin: int) -> PartSizes:
        part = lambda k: max(min(fmin, font_px), round(font_px * k))  # noqa: E731
        return PartSizes(font_px, part(SUB_EM), part(PRICE_EM), part(BADGE_EM), part(CTA_EM))


def as_parts(copy: str | CopyParts) -> CopyParts:
    return copy if isinstance(copy, CopyParts) else CopyParts(copy)
