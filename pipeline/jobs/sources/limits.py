"""Size limits and type sniffing shared by the path reader and the URL fetcher.

One job: the caps' wording (``too_large``) and recognising an image by its magic bytes
(``sniff_image_type``), so both sources answer the same way.
"""

from __future__ import annotations

from pipeline.images import InputError

MiB = 1024 * 1024


def _size_text(n: int) -> str:
    if n >= MiB:
        return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"
    return f"{n} bytes"


def too_large(field: str, max_bytes: int) -> InputError:
    return InputError(f"{field} is larger than {_size_text(max_bytes)}")


def sniff_image_type(data: bytes) -> str | None:
    """The image MIME type announced by the magic bytes, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None
