"""The deliberate fallback when a cut-out cannot be trusted: the whole photo as a product card.

A busy photo whose product cannot be separated cleanly is shown whole, framed like a print:
a thin light border, rounded corners and a soft edge, so the composite can stand it in the
scene with its shadow. That reads as a design choice, where scattered fragments of a product
read as a bug.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

BORDER = 0.035  # of the card's short side
RADIUS = 0.06


def product_card(photo: Image.Image) -> Image.Image:
    """RGBA card: the photo inside a light frame with rounded corners (alpha outside them)."""
    rgb = photo.convert("RGB")
    w, h = rgb.size
    pad = max(2, round(min(w, h) * BORDER))
    cw, ch = w + 2 * pad, h + 2 * pad
    card = Image.new("RGB", (cw, ch), (250, 249, 246))
    card.paste(rgb, (pad, pad))
    radius = max(2, round(min(cw, ch) * RADIUS))
    # Draw the rounded mask at 4x and scale down: anti-aliased corners without a library.
    big = Image.new("L", (cw * 4, ch * 4), 0)
    ImageDraw.Draw(big).rounded_rectangle((0, 0, cw * 4 - 1, ch * 4 - 1), radius * 4, fill=255)
    alpha = big.resize((cw, ch), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.4))
    card.putalpha(alpha)
    return card
