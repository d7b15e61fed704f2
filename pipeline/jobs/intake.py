"""Intake: a request's inputs checked and written into a fresh job folder, before it is run.

Reading (base64, a confined path, a guarded URL, a parent job) and decoding happen here, in a
worker thread of the server, so a bad input is refused with a clear message at submit and
the worker only opens files that decoded once already. The request handed on carries no
image payloads: the images are files in the job folder. Checking (``read_inputs``) is part of
accepting a job; writing the files (``write_inputs``: resizing, PNG encoding) can follow the
answer, as long as the job is not handed to the worker before it is done.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.config import Settings
from pipeline.fonts import FontCatalog
from pipeline.images import PHOTO_UPLOAD, InputError, decode_base64, load_image, probe_image, save_png
from pipeline.jobs.brandkits import BrandKitStore
from pipeline.jobs.sources import FetchPolicy, read_source
from pipeline.jobs.store import JobStore
from pipeline.schemas import GenerateRequest, image_reference

# Fields that hold image payloads or references: emptied once the images are files.
_IMAGE_FIELDS = ("product_image", "product_image_path", "product_image_url", "product_mask", "step1_image",
                 "step1_image_path")
UPSCALE_WARN = 2.0  # a photo enlarged more than this looks soft: say so
# A check is "light" when it needs no disk or network and its decoding costs about LIGHT_MS of CPU: then it runs
# on the event loop. Under load that is far quicker than a worker thread, which must win the GIL back from the
# busy loop at every release (up to 5 ms each). Decoding cost per megapixel, measured on 2 shared cores.
LIGHT_MS = 3.0
LIGHT_MAX_B64 = 256 * 1024  # characters: larger payloads always go to a thread
DECODE_MS_PER_MP = {"JPEG": 2.5, "WEBP": 6.0, "PNG": 13.0, "GIF": 13.0}


log = logging.getLogger("adgen.intake")

@dataclass
class IntakeResult:
    request: GenerateRequest  # image fields emptied
    warnings: list[str] = field(default_factory=list)


@dataclass
class CheckedInputs(IntakeResult):
    """Inputs read, decoded and checked (everything that can refuse a request), not yet written."""

    images: dict[str, Image.Image] = field(default_factory=dict)  # file name -> image, written as PNG
    fit: dict[str, tuple[int, int]] = field(default_factory=dict)  # file name -> size it is resized to first
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes written as they are


class Intake:
    def __init__(self, settings: Settings, store: JobStore, fonts: FontCatalog) -> None:
        self.settings = settings
        self.store = store
        self.fonts = fonts
        self.brand_kits: BrandKitStore | None = None  # set by the manager
        self._warm_families: set[str] = set()  # font_family values checked once (font files read): see is_light
        self.policy = FetchPolicy(allow_private=settings.allow_private_urls, max_bytes=settings.max_image_bytes,
                                  timeout_s=settings.fetch_timeout_s)

    def warm_fonts(self) -> None:
        """Load the font tables a first submission would otherwise wait for (~70 ms of glyph coverage)."""
        try:
            self.check_fonts(GenerateRequest.model_construct(text_content="Aa 가 あ 中"))
        except Exception as exc:  # only a warm-up: the first real request reports any problem properly
            log.debug("font warm-up: %s", exc)

    def is_light(self, req: GenerateRequest) -> bool:
        """Whether ``check`` would read nothing from disk or network and decode only a small base64 photo
        (and mask): a few milliseconds of CPU, cheaper on the event loop than a trip to a thread.

        The font check must be warm too: ASCII copy (no script fallback to ask fontconfig about) in a
        font_family list that passed a check before (its font files are read and cached)."""
        if req.start_step != 1 or req.parent_job_id or req.brand_kit or req.product_image_path \
                or req.product_image_url or not req.product_image:
            return False
        if (req.text_content and not req.text_content.isascii()) or req.font_family not in self._warm_families:
            return False
        payloads = [v for v in (req.product_image, req.product_mask) if v]
        if sum(len(v) for v in payloads) > LIGHT_MAX_B64 or any(image_reference(v) for v in payloads):
            return False
        cost = 0.0
        for value in payloads:
            try:  # the header only: size and format
                with Image.open(io.BytesIO(decode_base64(value, "image", LIGHT_MAX_B64))) as img:
                    cost += img.width * img.height / 1e6 * DECODE_MS_PER_MP.get(img.format or "", LIGHT_MS * 1e6)
            except Exception:  # not an image we can size: the full check (in a thread) says what is wrong
                return False
        return cost <= LIGHT_MS

    def check(self, req: GenerateRequest) -> tuple[GenerateRequest, CheckedInputs]:
        """Fonts and images checked in one trip to a thread: the request as accepted and its decoded images."""
        req = self.check_fonts(req)
        # A brand kit's files are copied into the job (checked against the copy first): later edits never reach it.
        kit_files = self.brand_kits.job_files(req) if req.brand_kit and self.brand_kits is not None else {}
        checked = self.read_inputs(req)
        checked.files.update(kit_files)
        return req, checked

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
        self._warm_families.add(req.font_family)
        return req.model_copy(update={"font_family": family_list})

    def _read(self, name: str, value: str | None, path: str | None = None, url: str | None = None) -> bytes:
        """An image field's bytes: base64, or (for the main field) a path / file:// URI / URL in its place."""
        kind = image_reference(value) if value else None
        s = self.settings
        return read_source(
            name, b64=value if kind is None else None, path=value if kind == "path" else path,
            url=value if kind == "url" else url, input_dirs=s.input_dirs, max_bytes=s.max_image_bytes,
            policy=self.policy,
        )

    def save_inputs(self, job_id: str, req: GenerateRequest) -> IntakeResult:
        """Read and decode the request's images into a new job folder."""
        checked = self.read_inputs(req)
        self.write_inputs(self.store.create(job_id), checked)
        return IntakeResult(checked.request, checked.warnings)

    def read_inputs(self, req: GenerateRequest) -> CheckedInputs:
        """Read, decode and check the request's images: every refusal happens here, nothing is written."""
        s = self.settings
        notes: list[str] = []
        clean = req.model_copy(update=dict.fromkeys(_IMAGE_FIELDS))
        checked = CheckedInputs(clean, notes)
        if req.start_step == 1:
            self._read_photo(req, checked)
        elif req.parent_job_id:
            self._parent_step1(req, req.parent_job_id, checked)
        else:
            raw = self._read("step1_image", req.step1_image, req.step1_image_path)
            img = load_image(raw, "step1_image", s.max_image_pixels, notes)
            checked.images["step1.png"] = img
            if img.size != (req.width, req.height):
                checked.images["step1.png"] = img.convert("RGB")
                checked.fit["step1.png"] = (req.width, req.height)
        return checked

    def _read_photo(self, req: GenerateRequest, checked: CheckedInputs) -> None:
        """Step 1's inputs: the photo (given, or an earlier job's) and an optional product mask."""
        s, notes = self.settings, checked.warnings
        if req.parent_job_id and not (req.product_image or req.product_image_path or req.product_image_url):
            size = self._parent_photo(req.parent_job_id, checked).size
        else:
            raw = self._read("product_image", req.product_image, req.product_image_path, req.product_image_url)
            size = probe_image(raw, "product_image", s.max_image_pixels, notes)  # checked here, decoded by the worker
            checked.files[PHOTO_UPLOAD] = raw  # (which also writes product.png)
        if req.product_mask:
            mask_raw = self._read("product_mask", req.product_mask)
            checked.images["product_mask.png"] = load_image(mask_raw, "product_mask", s.max_image_pixels).convert("L")
        scale = max(req.width / size[0], req.height / size[1]) * 0.6  # the product's share of the canvas
        if scale > UPSCALE_WARN:
            notes.append(f"The photo is small ({size[0]}x{size[1]}); it was enlarged about {scale:.0f}x "
                         "and may look soft. A larger photo gives a sharper ad.")

    def _parent_step1(self, req: GenerateRequest, parent_id: str, checked: CheckedInputs) -> None:
        """Step 2 from an earlier job: its step 1 image (fitted to the size asked) and, same size, its mask."""
        parent = self.store.artifact(parent_id, "step1.png")
        if parent is None:
            raise InputError(f"parent_job_id: job {parent_id} has no step 1 image (unknown, failed "
                             "before step 1, or removed); give step1_image instead")
        with Image.open(parent) as step1:
            same = step1.size == (req.width, req.height)
            if not same:
                step1.load()
                checked.images["step1.png"] = step1.convert("RGB")
                checked.fit["step1.png"] = (req.width, req.height)
        if same:  # read now: the parent job may be pruned before the copy is written
            checked.files["step1.png"] = parent.read_bytes()
            mask = self.store.artifact(parent_id, "mask.png")
            if mask is not None:  # where the product stands: the copy is planned around it
                checked.files["mask.png"] = mask.read_bytes()

    def _parent_photo(self, job_id: str, checked: CheckedInputs) -> Image.Image:
        """An earlier job's product photo (and given mask), as stored at its intake (edit_ad re-running step 1)."""
        upload = self.store.job_dir(job_id) / PHOTO_UPLOAD
        photo = upload if upload.is_file() else self.store.artifact(job_id, "product.png")
        if photo is None:
            raise InputError(f"parent_job_id: job {job_id} has no product photo (unknown, a step 2 job, or "
                             "removed); give product_image instead")
        raw = photo.read_bytes()  # read now: the parent may be pruned meanwhile
        checked.files[photo.name] = raw
        given_mask = self.store.job_dir(job_id) / "product_mask.png"
        if given_mask.is_file():
            checked.files["product_mask.png"] = given_mask.read_bytes()
        return load_image(raw, "product_image", self.settings.max_image_pixels)

    def write_inputs(self, job_dir: Path, checked: CheckedInputs) -> None:
        """The checked images as files in the job folder (the slow part: resizing and PNG encoding)."""
        for name, data in checked.files.items():
            tmp = job_dir / (name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, job_dir / name)  # atomically, like save_png
        for name, img in checked.images.items():
            size = checked.fit.get(name)
            if size is not None:
                img = img.resize(size, Image.Resampling.LANCZOS)
            save_png(img, job_dir / name)
