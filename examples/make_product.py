"""Draws the bundled example product photo (a serum bottle on a studio backdrop).

Run once to regenerate examples/product.jpg; the demo and tests use the committed file.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

S = 2  # supersample for smooth edges
W, H = 768, 768


def main() -> None:
    w, h = W * S, H * S
    yy = np.linspace(0, 1, h)[:, None]
    backdrop = (np.array([238, 236, 233]) - 18 * yy[..., None]) * np.ones((1, w, 1))
    img = Image.fromarray(backdrop.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    cx = w // 2
    # glass body with a vertical shading gradient
    body = Image.new("RGB", (300 * S, 420 * S))
    xs = np.linspace(-1, 1, 300 * S)
    shade = 0.55 + 0.45 * np.cos(xs * 1.25)
    col = np.array([46, 112, 92])[None, None, :] * shade[None, :, None] * np.ones((420 * S, 1, 1))
    col[:, int(0.18 * 300 * S) : int(0.24 * 300 * S)] += 60  # specular stripe
    body = Image.fromarray(np.clip(col, 0, 255).astype(np.uint8), "RGB")
    mask = Image.new("L", body.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, body.size[0] - 1, body.size[1] - 1), radius=46 * S, fill=255)
    top = 250 * S
    img.paste(body, (cx - body.size[0] // 2, top), mask)
    # neck and cap
    d.rectangle((cx - 50 * S, top - 40 * S, cx + 50 * S, top + 4 * S), fill=(200, 190, 160))
    d.rounded_rectangle((cx - 70 * S, top - 160 * S, cx + 70 * S, top - 36 * S), radius=18 * S, fill=(28, 28, 30))
    d.rectangle((cx - 52 * S, top - 150 * S, cx - 40 * S, top - 46 * S), fill=(70, 70, 74))
    # white label
    d.rounded_rectangle((cx - 110 * S, top + 120 * S, cx + 110 * S, top + 300 * S), radius=10 * S, fill=(246, 244, 238))
    try:
        font = ImageFont.truetype(str(Path(__file__).parent.parent / "fonts" / "NanumSquareB.ttf"), 44 * S)
        small = ImageFont.truetype(str(Path(__file__).parent.parent / "fonts" / "NanumSquareR.ttf"), 20 * S)
    except OSError:
        font = small = ImageFont.load_default()
    d.text((cx, top + 185 * S), "VERDE", font=font, fill=(30, 70, 58), anchor="mm")
    d.text((cx, top + 245 * S), "HYDRA SERUM  30ml", font=small, fill=(80, 90, 86), anchor="mm")
    img = img.resize((W, H), Image.Resampling.LANCZOS).filter(ImageFilter.SMOOTH)
    out = Path(__file__).parent / "product.jpg"
    img.save(out, quality=90)
    print(out)


if __name__ == "__main__":
    main()
