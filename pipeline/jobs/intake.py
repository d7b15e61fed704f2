"""Intake: a request's inputs checked and written into a fresh job folder, before it is queued.

Decoding happens here, in a worker thread of the server, so a bad image is refused with a
clear message at submit and the worker only ever opens files that decoded once already.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings
from pipeline.fonts import FontCatalog
from pipeline.images import InputError, decode_base64, load_image, read_confined, save_png
from pipeline.jobs.store import JobStore
from pipeline.schemas import GenerateRequest


class Intake:
    def __init__(self, settings: Settings, store: JobStore, fonts: FontCatalog) -> None:
        self.settings = settings
        self.store = store
        self.fonts = fonts

    def check_fonts(self, req: GenerateRequest) -> GenerateRequest:
        """font_family normalised to known families, and every character of the copy drawable."""
        try:
            family_list = self.fonts.check_family_list(req.font_family)
        except ValueError as exc:
            raise InputError(f"font_family: {exc}") from None
        if req.text_content:
            missing = self.fonts.missing_glyphs(req.text_content, [f.strip() for f in family_list.split(",")])
            if missing:
                shown = ", ".join(f"U+{ord(c):04X}" for c in missing[:8])
                raise InputError(f"text_content has characters no installed font can draw: {shown}")
        return req.model_copy(update={"font_family": family_list})

    def save_inputs(self, job_id: str, req: GenerateRequest) -> Path:
        """Decode the request's image and write it into a new job folder; returns the folder."""
        s = self.settings
        if req.start_step == 1:
            field, b64, path, name = "product_image", req.product_image, req.product_image_path, "product.png"
        else:
            field, b64, path, name = "step1_image", req.step1_image, req.step1_image_path, "step1.png"
        if b64 is not None:
            raw = decode_base64(b64, field, s.max_image_bytes)
        else:
            assert path is not None
            raw = read_confined(path, f"{field}_path", s.input_dirs, s.max_image_bytes)
        img = load_image(raw, field, s.max_image_pixels)
        if req.start_step == 2 and img.size != (req.width, req.height):
            img = img.convert("RGB").resize((req.width, req.height))
        job_dir = self.store.create(job_id)
        save_png(img, job_dir / name)
        return job_dir
