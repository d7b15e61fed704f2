"""The contact sheet: every result of a placements/variants job side by side, labelled, in one JPEG.

One row per variant, one column per placement, every tile the same height so that the aspect
ratios compare at a glance. The file stays under 1 MiB (a client may refuse more in one message);
a smaller copy is the job's preview.jpg, the image tool results attach.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

MAX_BYTES = 1024 * 1024 - 64 * 1024  # under 1 MiB with room to spare
MAX_SIDE = 2400  # px: the sheet's longer side at most (readable tiles, a file well under the limit)
PREVIEW_SIDE = 1024  # px: the preview's longer side (tool results keep it under 512 KB of base64)
PREVIEW_BYTES = 360 * 1024  # JPEG bytes; base64 adds a third (-> < 512 KB)
GAP, LABEL = 16, 30  # px between tiles; height of a tile's label at full scale
BG, INK, DIM = (24, 25, 28), (236, 236, 238), (150, 152, 158)


@dataclass(frozen=True)
class Tile:
    image: Image.Image  # any size; scaled to the row height
    title: str  # e.g. "story v2"
    note: str = ""  # e.g. "1080x1920 · seed 42"


def _font(fonts_dir: Path | None, size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "NanumSquareB.ttf" if bold else "NanumSquareR.ttf"
    if fonts_dir is not None and (fonts_dir / name).is_file():
        return ImageFont.truetype(str(fonts_dir / name), size)
    return ImageFont.load_default(size=size)


def contact_sheet(rows: list[list[Tile]], fonts_dir: Path | None = None) -> Image.Image:
    """The tiles in rows (a variant each), scaled to one tile height so that the sheet's longer side is
    at most MAX_SIDE."""
    def natural(h: int) -> tuple[int, int]:
        width = max(sum(round(t.image.width * h / t.image.height) for t in row) + GAP * (len(row) + 1)
                    for row in rows)
        return width, len(rows) * (h + LABEL) + GAP * (len(rows) + 1)

    tile_h = 480
    while tile_h > 60 and max(natural(tile_h)) > MAX_SIDE:
        tile_h -= 20
    width, height = natural(tile_h)
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)
    title_font, note_font = _font(fonts_dir, 17, True), _font(fonts_dir, 14, False)
    y = GAP
    for row in rows:
        x = GAP
        for tile in row:
            w = round(tile.image.width * tile_h / tile.image.height)
            sheet.paste(tile.image.convert("RGB").resize((w, tile_h), Image.Resampling.LANCZOS), (x, y))
            draw.text((x, y + tile_h + 6), tile.title, fill=INK, font=title_font)
            if tile.note:
                tw = draw.textlength(tile.title + "  ", font=title_font)
                if tw + draw.textlength(tile.note, font=note_font) <= w:
                    draw.text((x + tw, y + tile_h + 8), tile.note, fill=DIM, font=note_font)
            x += w + GAP
        y += tile_h + LABEL + GAP
    return sheet


def jpeg_under(image: Image.Image, max_bytes: int, max_side: int) -> bytes:
    """The image as a JPEG of at most ``max_bytes``: lower quality first, then smaller."""
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    while True:
        for quality in (88, 80, 72, 64, 56):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality, optimize=True, progressive=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)), Image.Resampling.LANCZOS)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_contact_sheet(rows: list[list[Tile]], job_dir: Path, fonts_dir: Path | None = None) -> Path:
    """contact.jpg (< 1 MiB) in the job folder, and a smaller copy as its preview.jpg."""
    sheet = contact_sheet(rows, fonts_dir)
    path = job_dir / "contact.jpg"
    write_atomic(path, jpeg_under(sheet, MAX_BYTES, MAX_SIDE))
    write_atomic(job_dir / "preview.jpg", jpeg_under(sheet, PREVIEW_BYTES, PREVIEW_SIDE))
    return path
