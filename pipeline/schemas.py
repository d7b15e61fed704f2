"""Every request and response model, shared by the MCP tools and the REST routes.

Field names and meanings follow the design document (sections 4.1 and 4.2) so clients
written against it keep working; additions are marked as such in their descriptions.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from pipeline.cssvalues import parse_font_family, validate_color
from pipeline.placements import PlacementName

JobState = Literal["pending", "running", "completed", "failed", "stopped"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "stopped"})

# Base64 of the largest accepted image file (25 MiB) plus a little slack for a data: prefix.
MAX_B64_CHARS = 36_000_000
MAX_COPY_CHARS = 300
MAX_PROMPT_CHARS = 2000
DEFAULT_SIZE = 1024  # width and height when neither is given
MAX_VARIANTS = 8
MAX_RESULTS = 16  # placements x variants: one job's images, each a full step 2 (and step 1 refine)

FontWeight = Literal[
    "normal", "bold", "lighter", "bolder", "100", "200", "300", "400", "500", "600", "700", "800", "900"
]
# How far refinement may relight the product's own pixels (pipeline/worker/stages/fidelity.py enforces it).
Relight = Literal["none", "subtle", "full"]


def _reject_control_chars(value: str | None, field: str, allow_newlines: bool) -> str | None:
    if value is None:
        return value
    for ch in value:
        if ch in "\n\t" and allow_newlines:
            continue
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029":
            raise ValueError(f"{field} contains a control character (U+{ord(ch):04X})")
    return value


class GenerateRequest(BaseModel):
    """One advertising image: a product photo plus a line of copy (design doc 4.1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    start_step: Annotated[int, Field(ge=1, le=2)] = Field(
        1, description="1 = full pipeline; 2 = resume from step 2 using step1_image or parent_job_id "
        "(human-in-the-loop).",
    )
    product_image: str | None = Field(
        None,
        max_length=MAX_B64_CHARS,
        description="Product photo: base64 (PNG, JPEG, WebP or GIF; a data: URL prefix is accepted), or a "
        "file:// URI or path inside the server's input folders (see get_resources), or an http(s) URL. "
        "Required when start_step is 1 unless product_image_path or product_image_url is given.",
    )
    product_image_path: str | None = Field(
        None,
        max_length=4096,
        description="Addition: path (or file:// URI) to the product photo inside one of the server's input "
        "folders; relative paths resolve against those folders.",
    )
    product_image_url: str | None = Field(
        None, max_length=8192,
        description="Addition: public http(s) URL of the product photo, fetched by the server (private and "
        "loopback addresses are refused unless the server allows them).",
    )
    cutout: Literal["auto", "alpha", "none"] = Field(
        "auto", description="Addition: how the product is cut from its photo: auto (alpha channel if the PNG has "
        "one, else segmentation, with a confidence check), alpha (trust the PNG's alpha), none (use the whole photo).",
    )
    product_mask: str | None = Field(
        None, max_length=MAX_B64_CHARS,
        description="Addition: the product's mask as base64 PNG (or a path/file:// URI in an input folder), "
        "white = product. Overrides segmentation.",
    )
    parent_job_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$",
        description="Addition: a previous job. With start_step 2 its step 1 image is used (no step1_image needed); "
        "with start_step 1 and no photo given, its product photo.",
    )
    text_content: str | None = Field(
        None,
        max_length=MAX_COPY_CHARS,
        description="The ad copy to set in type (the headline). null skips step 2: the step 1 image is the final "
        "image. Emphasis: **bold** and ==highlight== (no HTML: any other character is shown as typed).",
    )
    subline: str | None = Field(
        None, max_length=200,
        description="Addition: a smaller line under the headline (same emphasis markup). Needs text_content.",
    )
    cta: str | None = Field(
        None, max_length=40, description="Addition: call to action, drawn as a button, e.g. 'Shop now'. Needs "
        "text_content.",
    )
    badge: str | None = Field(
        None, max_length=20, description="Addition: a short badge beside the price, e.g. '-30%' or 'NEW'. Needs "
        "text_content.",
    )
    price: str | None = Field(
        None, max_length=40, description="Addition: the price as it should read, e.g. '₩19,900'. Needs text_content.",
    )
    bg_prompt: str = Field(
        "Wooden table in a cozy cafe, sunlight, realistic",
        max_length=MAX_PROMPT_CHARS,
        description="Scene for the generated background.",
    )
    bg_negative_prompt: str = Field(
        "blurry, low quality, distorted",
        max_length=MAX_PROMPT_CHARS,
        description="What the background must avoid. FLUX honours it only when the server runs true CFG "
        "(ADGEN_TRUE_CFG_SCALE > 1, twice the compute); otherwise, and in the draft backend, it is ignored.",
    )
    bg_composition_prompt: str = Field(
        "A photorealistic object lying naturally on the surface, soft contact shadow",
        max_length=MAX_PROMPT_CHARS,
        description="Prompt for the refinement pass over the composite.",
    )
    bg_composition_negative_prompt: str = Field(
        "floating, disconnected, unrealistic shadows",
        max_length=MAX_PROMPT_CHARS,
        description="What the refinement pass must avoid; same rule as bg_negative_prompt (true CFG only).",
    )
    step1_image: str | None = Field(
        None,
        max_length=MAX_B64_CHARS,
        description="Base64 step 1 result to resume from (required when start_step is 2).",
    )
    step1_image_path: str | None = Field(
        None, max_length=4096, description="Addition: path form of step1_image, inside an input folder."
    )
    html_style_prompt: str = Field(
        "Modern bold design with a soft drop shadow",
        max_length=MAX_PROMPT_CHARS,
        description="Style instructions for the text layer's HTML/CSS.",
    )
    use_qwen_analysis: bool = Field(True, description="Analyse the step 1 image before designing the text layer.")
    font_family: str = Field(
        "NanumSquare, sans-serif",
        max_length=400,
        description="CSS font-family list; each name must be a font from list_fonts or a generic family.",
    )
    font_weight: FontWeight = Field("bold", description="CSS font-weight.")
    text_color: str | None = Field(
        None,
        description="CSS colour or linear-/radial-gradient, e.g. 'linear-gradient(45deg, #FFD700, #FFA500)'. "
        "null = chosen automatically for contrast with the background.",
    )
    text_position: Literal["top", "center", "bottom", "auto"] = Field(
        "auto", description="Where the copy goes; auto picks the freest region away from the product."
    )
    text_size: Annotated[int, Field(ge=8, le=400)] = Field(72, description="Font size in CSS pixels at 1024 px.")
    use_llm_html: bool = Field(True, description="Let an LLM write the HTML/CSS (else the template designer).")
    strength: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.6, description="Refinement strength (img2img).")
    relight: Relight = Field(
        "subtle", description="Addition: how much refinement may relight the product itself. none: the product's "
        "pixels stay exactly as photographed (only its edge blends into the scene); subtle: the scene's light and "
        "colour cast at most a mean CIEDE2000 of 3 in the product's core (retried once with another seed, then "
        "limited, with a warning); full: the scene's light may change its colours more. Always measured: "
        "product_fidelity in the status.",
    )
    guidance_scale: Annotated[float, Field(ge=0.0, le=30.0)] = Field(3.5, description="Diffusion guidance scale.")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(None, description="null = random; reported back.")
    test_mode: bool = Field(False, description="Use the fast CPU draft backend whatever the server default is.")
    width: Annotated[int, Field(ge=256, le=4096)] = Field(
        1024, description="Addition: output width in px, delivered exactly (e.g. 1080, 1200, 1920).")
    height: Annotated[int, Field(ge=256, le=4096)] = Field(
        1024, description="Addition: output height in px, delivered exactly (e.g. 1080, 1350, 1920, 628).")
    output_format: Literal["png", "jpeg", "webp"] = Field(
        "png", description="Addition: file format of the ad written to the server's output folder.")
    quality: Annotated[int, Field(ge=1, le=100)] = Field(
        92, description="Addition: JPEG/WebP quality of the delivered file (PNG is lossless).")
    brand_kit: str | None = Field(
        None, max_length=40, description="Addition: name of a saved brand kit (save_brand_kit, list_brand_kits): its "
        "colours, fonts (before font_family, which becomes the fallback), logo and tone words are applied. An "
        "explicit text_color still wins over the kit's text colour.",
    )
    placements: list[PlacementName] | None = Field(
        None, min_length=1, max_length=5,
        description="Addition: named sizes, each a result of its own with that platform's safe zones kept free of "
        "copy: square 1080x1080, portrait 1080x1350, story 1080x1920, landscape 1200x628, wide 1920x1080. Leave "
        "width/height at their default when giving placements. The first placement's first variant is final_result.",
    )
    variants: Annotated[int, Field(ge=1, le=MAX_VARIANTS)] = Field(
        1, description="Addition: how many versions of each placement, each with its own seed (seed, seed+1, ...) "
        "and, with the template designer, its own layout. At most 16 results in all (placements x variants).",
    )

    @field_validator("text_content")
    @classmethod
    def _copy_text(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        return _reject_control_chars(v, "text_content", allow_newlines=True)

    @field_validator("subline", "cta", "badge", "price")
    @classmethod
    def _copy_parts(cls, v: str | None, info: Any) -> str | None:
        if v is not None and not v.strip():
            return None
        return _reject_control_chars(v, info.field_name, allow_newlines=info.field_name == "subline")

    @field_validator(
        "bg_prompt", "bg_negative_prompt", "bg_composition_prompt", "bg_composition_negative_prompt",
        "html_style_prompt",
    )
    @classmethod
    def _prompts(cls, v: str, info: Any) -> str:
        return _reject_control_chars(v, info.field_name, allow_newlines=True) or ""

    @field_validator("text_color")
    @classmethod
    def _color(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "auto") else validate_color(v)

    @field_validator("font_family")
    @classmethod
    def _font(cls, v: str) -> str:
        parse_font_family(v)
        return v

    @model_validator(mode="after")
    def _inputs_for_step(self) -> GenerateRequest:
        if self.text_content is None:
            extra = [f for f in ("subline", "cta", "badge", "price") if getattr(self, f)]
            if extra:
                raise ValueError(f"{extra[0]} needs text_content (the headline)")
        if self.start_step == 1:
            given = [f for f in ("product_image", "product_image_path", "product_image_url") if getattr(self, f)]
            if not given and not self.parent_job_id:
                raise ValueError("start_step 1 needs the photo: product_image (base64, path or URL), "
                                 "product_image_path, product_image_url or parent_job_id (that job's photo)")
            if len(given) > 1:
                raise ValueError(f"give one of {', '.join(given)}, not several")
        else:
            given = [f for f in ("step1_image", "step1_image_path", "parent_job_id") if getattr(self, f)]
            if not given:
                raise ValueError("start_step 2 needs step1_image, step1_image_path or parent_job_id "
                                 "(the step 1 result to resume from)")
            if len(given) > 1:
                raise ValueError(f"give one of {', '.join(given)}, not several")
        return self

    @model_validator(mode="after")
    def _placements_and_variants(self) -> GenerateRequest:
        if self.placements is not None:
            if len(set(self.placements)) != len(self.placements):
                raise ValueError("placements: each placement may be given once")
            if (self.width, self.height) != (DEFAULT_SIZE, DEFAULT_SIZE):
                raise ValueError("give placements or width/height, not both (each placement has its own size)")
        results = len(self.placements or [None]) * self.variants
        if results > MAX_RESULTS:
            raise ValueError(f"placements x variants is {results}; at most {MAX_RESULTS} results per job")
        return self

    def public_parameters(self) -> dict[str, Any]:
        """The request without image payloads, for status responses and logs."""
        data = self.model_dump(exclude={"product_image", "step1_image", "product_mask"})
        for name in ("product_image", "step1_image", "product_mask"):
            value = getattr(self, name)
            data[name] = None if value is None else (value if image_reference(value) else "<base64>")
        return data


_IMAGE_PATH_RE = re.compile(r"\.(png|jpe?g|webp|gif)$", re.IGNORECASE)


def image_reference(value: str) -> str | None:
    """'url' or 'path' when an image field holds a reference instead of base64, else None.

    Unambiguous because base64 never contains ':' or '.': a value starting with http(s)://
    is a URL; file://, ~, ./ or ../, or one ending in an image extension, is a path.
    """
    v = value.strip()
    low = v[:8].lower()
    if low.startswith(("http://", "https://")):
        return "url"
    if low.startswith("file://") or v.startswith(("~", "./", "../")) or _IMAGE_PATH_RE.search(v[-6:]):
        return "path"
    return None


# edit_ad takes any of a request's fields except its inputs: the photo and step 1 come from the edited job.
NOT_EDITABLE = frozenset({
    "start_step", "product_image", "product_image_path", "product_image_url", "product_mask", "step1_image",
    "step1_image_path", "parent_job_id",
})
EDITABLE_FIELDS: tuple[str, ...] = tuple(f for f in GenerateRequest.model_fields if f not in NOT_EDITABLE)


def _optional(name: str) -> tuple[Any, Any]:
    info = copy.copy(GenerateRequest.model_fields[name])
    info.default, info.default_factory = None, None  # absent = keep the job's value (constraints still check)
    return Optional[info.annotation], info  # noqa: UP045 (a runtime type, not an annotation)


class _EditTarget(BaseModel):
    """A completed job with some fields changed. Only the fields given change; the rest are the job's own."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    job_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The completed job to edit.")


# REST body and edit_ad's arguments: one schema, built from GenerateRequest's fields.
EditRequest = create_model(  # type: ignore[call-overload]
    "EditRequest", __base__=_EditTarget, __doc__=_EditTarget.__doc__,
    **{name: _optional(name) for name in EDITABLE_FIELDS},
)


class JobAccepted(BaseModel):
    job_id: str
    status: JobState
    queue_position: int | None = Field(None, description="0 = running next; null when already running.")


class GpuInfo(BaseModel):
    index: int
    name: str
    vram_used_mb: int
    vram_total_mb: int
    vram_percent: float
    utilization: int | None = None


class SystemMetrics(BaseModel):
    cpu_percent: float
    ram_used_gb: float
    ram_total_gb: float
    ram_percent: float
    gpu_info: list[GpuInfo] = Field(default_factory=list)


class StatusResponse(BaseModel):
    """Job status (design doc 4.2). Result fields carry URIs/URLs, or base64 where asked for."""

    job_id: str
    status: JobState
    progress_percent: int = Field(ge=0, le=100)
    current_step: str | None = Field(None, description="step1_background or step2_html_rendering.")
    sub_step: str | None = Field(None, description="Stage and inner step, e.g. 'background_generation (10/28)'.")
    message: str = ""
    elapsed_sec: float = 0.0
    eta_seconds: float | None = Field(None, description="Whole job; negative = running over the estimate.")
    step_eta_seconds: float | None = Field(None, description="Current stage; negative = running over.")
    queue_position: int | None = Field(None, description="Addition: jobs ahead of this one while pending.")
    error: str | None = Field(None, description="Addition: why the job failed or stopped.")
    backend: str | None = Field(None, description="Addition: draft or diffusion.")
    warnings: list[str] = Field(default_factory=list, description="Addition: things the person should know about "
                                "this ad (a fallback layout, an upscaled photo...), one sentence each.")
    cutout_confidence: float | None = Field(None, description="Addition: 0..1, how clean the product cut-out is; "
                                            "below the threshold a deliberate fallback layout is used.")
    product_fidelity: dict[str, float] | None = Field(
        None, description="Addition: how far refinement moved the product's own pixels, measured in its eroded core "
        "against the product as placed: delta_e_mean (mean CIEDE2000; <= 3 with relight none/subtle) and ssim "
        "(structural similarity, 1 = identical). null when no product was refined (step 2 jobs).",
    )
    provenance: dict[str, Any] | None = Field(
        None, description="Addition: what made this image, as written into every delivered file (PNG iTXt + XMP, "
        "JPEG/WebP XMP + EXIF): generator, backend, profile, models with revisions and licences, seed, relight and "
        "the IPTC digital source type.",
    )
    output_file: str | None = Field(None, description="Addition: absolute path of the finished ad in the "
                                    "server's output folder (open it from there).")
    download_url: str | None = Field(None, description="Addition: HTTP path of the delivered file on this server "
                                     "(HTTP transports; token-protected like every route).")
    parent_job_id: str | None = Field(None, description="Addition: the job this one was derived from.")
    edit_note: str | None = Field(None, description="Addition: for edit_ad jobs, what was redone and why (only the "
                                  "text layer on identical step 1 pixels, or step 1 again with which seed).")
    contrast_ratio: float | None = Field(
        None, description="Addition: the copy's lowest WCAG contrast ratio (1-21) against the pixels actually behind "
        "it, measured on the rendered ad; below 4.5 (3 for large text) a warning says so. null without copy.",
    )
    designer: str | None = Field(None, description="Addition: who designed the text layer "
                                 "(mcp_sampling, anthropic or template).")
    design_note: str | None = Field(None, description="Addition: why the template was used, or what was removed.")
    system_metrics: SystemMetrics | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    step1_result: str | None = None
    step2_result: str | None = Field(None, description="The transparent text layer.")
    final_result: str | None = None
    results: list[ResultItem] = Field(
        default_factory=list, description="Addition: every finished image (placements x variants), first = "
        "final_result. With more than one, preview.jpg (the attached preview) is a labelled contact sheet.",
    )


class ResultItem(BaseModel):
    """One finished image of a job: a placement's variant (a job without placements has one, 'custom')."""

    placement: str = Field(description="square, portrait, story, landscape, wide, or custom (width x height).")
    variant: int = Field(ge=1, description="1-based; variant n used seed + n - 1.")
    width: int
    height: int
    seed: int = Field(description="The seed this result's scene was generated with.")
    uri: str = Field(description="The PNG: an adgen:// resource URI (MCP) or a server path (REST).")
    path: str | None = Field(None, description="Its copy in the server's output folder (absolute path).")
    contrast_ratio: float | None = Field(None, description="Its copy's lowest WCAG contrast against what is behind "
                                         "it (null without copy).")


class StopResponse(BaseModel):
    job_id: str
    status: JobState
    message: str


class FontInfo(BaseModel):
    id: str = Field(description="Use this (or family) in font_family.")
    family: str
    styles: list[str]
    weights: list[int]
    hangul: bool = Field(description="Covers the Hangul syllables block.")
    scripts: list[str] = Field(default_factory=list, description="Scripts it draws (latin, hangul, japanese, "
                               "chinese-simplified, chinese-traditional, arabic, hebrew, thai, devanagari...).")
    bundled: bool = Field(description="Shipped in the project's fonts/ folder (else found on the system).")


class FontList(BaseModel):
    fonts: list[FontInfo]


# ---- brand kits ------------------------------------------------------------------------------
BRAND_KIT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
MAX_FONT_BYTES = 10 * 1024 * 1024  # an uploaded font file
MAX_LOGO_BYTES = 5 * 1024 * 1024  # an uploaded logo file (PNG or SVG)
LogoCorner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]


def check_brand_kit_name(value: str) -> str:
    if not BRAND_KIT_NAME.match(value):
        raise ValueError("name must be 1-40 lowercase letters, digits and hyphens, starting and ending with a "
                         "letter or digit (e.g. 'acme-summer')")
    return value


def opaque_hex(value: str, field: str) -> str:
    """A plain, opaque CSS colour as #rrggbb (kits need one colour to measure contrast with)."""
    from PIL import ImageColor  # light; kept out of import time of every schema user

    try:
        v = validate_color(value)
    except ValueError:
        raise ValueError(f"{field} must be a CSS colour (#RRGGBB, rgb(), hsl() or a colour name)") from None
    if "gradient(" in v or v.lower() in ("transparent", "currentcolor"):
        raise ValueError(f"{field} must be one plain colour (#RRGGBB, rgb(), hsl() or a name), not a gradient")
    try:
        rgb = ImageColor.getrgb(v)
    except ValueError:
        raise ValueError(f"{field}: {v[:40]!r} is not a colour this server can read; use #RRGGBB") from None
    if len(rgb) == 4 and rgb[3] != 255:
        raise ValueError(f"{field} must be opaque (no alpha)")
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


class BrandColors(BaseModel):
    """A kit's colours, stored as #rrggbb."""

    model_config = ConfigDict(extra="forbid")

    primary: str = Field(max_length=100, description="Main brand colour: the call-to-action button.")
    secondary: str = Field(max_length=100, description="Second colour: the badge.")
    text: str = Field(max_length=100, description="Colour of the copy.")
    background: str = Field(max_length=100, description="Colour of the panel behind the copy when the picture "
                            "needs one for contrast.")

    @field_validator("primary", "secondary", "text", "background")
    @classmethod
    def _colour(cls, v: str, info: Any) -> str:
        return opaque_hex(v, f"colors.{info.field_name}")


class FontUpload(BaseModel):
    """A font file sent with the kit (stored on the server, validated with fontTools)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(max_length=MAX_FONT_BYTES * 4 // 3 + 200, description="The font file as base64 (TTF, OTF or "
                      "WOFF2; 10 MiB at most).")


class BrandFontsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headline: str | FontUpload = Field(
        "NanumSquare", description="A list_fonts id or family, or {data: base64 TTF/OTF/WOFF2} to upload one.")
    body: str | FontUpload | None = Field(
        None, description="Font of the subline, price, badge and button; same forms; null = the headline's.")

    @field_validator("headline", "body")
    @classmethod
    def _name(cls, v: str | FontUpload | None, info: Any) -> str | FontUpload | None:
        if isinstance(v, str):
            parse_font_family(v)
            if "," in v:
                raise ValueError(f"fonts.{info.field_name}: one font, not a list")
        return v


class BrandKitInput(BaseModel):
    """What save_brand_kit takes (saving a name again replaces that kit)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40, description="1-40 lowercase letters, digits and hyphens, e.g. 'acme-summer'.")
    colors: BrandColors
    fonts: BrandFontsInput = Field(default_factory=lambda: BrandFontsInput(headline="NanumSquare", body=None))
    logo: str | None = Field(
        None, max_length=MAX_LOGO_BYTES * 4 // 3 + 200,
        description="PNG or SVG logo: base64 (a data: prefix is accepted) or a path inside the server's input "
        "folders. SVG must be self-contained (no scripts, no external references) and is rasterised on the server.",
    )
    logo_corner: LogoCorner = Field("top-right", description="Corner of the ad the logo goes in (inside the "
                                    "placement's safe zone, never over the product or the copy).")
    tone: list[Annotated[str, Field(min_length=1, max_length=30)]] = Field(
        default_factory=list, max_length=8, description="Tone words for the designer, e.g. ['playful', 'premium'].")

    @field_validator("name")
    @classmethod
    def _kit_name(cls, v: str) -> str:
        return check_brand_kit_name(v)

    @field_validator("tone")
    @classmethod
    def _tone(cls, v: list[str]) -> list[str]:
        for word in v:
            _reject_control_chars(word, "tone", allow_newlines=False)
            if not re.fullmatch(r"[\w' -]+", word):
                raise ValueError(f"tone: {word[:30]!r} must be plain words (letters, digits, spaces, hyphens)")
        return [w.strip() for w in v if w.strip()]


class BrandFont(BaseModel):
    family: str = Field(description="The CSS family the renderer uses.")
    source: Literal["catalog", "upload"]
    file: str | None = Field(None, description="Uploaded: the stored file's name in the kit.")
    original_family: str | None = Field(None, description="Uploaded: the family name inside the file.")


class BrandLogo(BaseModel):
    file: str = "logo.png"
    width: int
    height: int
    source: Literal["png", "svg"]


class BrandKit(BaseModel):
    """A saved brand kit, as list_brand_kits shows it."""

    name: str
    colors: BrandColors
    fonts: dict[str, BrandFont] = Field(description="headline and body.")
    logo: BrandLogo | None = None
    logo_corner: LogoCorner = "top-right"
    tone: list[str] = Field(default_factory=list)
    updated_at: float = 0.0


class BrandKitList(BaseModel):
    kits: list[BrandKit]


class BrandKitDeleted(BaseModel):
    name: str
    deleted: bool
    message: str


class HealthResponse(BaseModel):
    status: Literal["ok", "warming", "degraded"] = Field(description="warming = the worker is still loading the "
                                                         "models it keeps resident (jobs are accepted and run).")
    gpu_available: bool
    worker_alive: bool
    backend: str
    queue_length: int
    running_job: str | None = None
    problems: list[str] = Field(default_factory=list, description="Addition: what makes the server degraded, "
                                "each with its fix (e.g. a missing Chromium).")


class ResourcesResponse(BaseModel):
    system_metrics: SystemMetrics
    backend: str
    worker_alive: bool
    worker_pid: int | None = None
    models: dict[str, Any] = Field(default_factory=dict, description="Model cache contents and precision.")
    status: Literal["ok", "degraded"] = Field("ok", description="Addition: as /health says.")
    problems: list[str] = Field(default_factory=list, description="Addition: what is wrong, each with its fix.")
    input_dirs: list[str] = Field(default_factory=list, description="Addition: existing folders from which "
                                  "product_image_path (and the other *_path fields) may read; empty = paths refused.")
    output_dir: str | None = Field(None, description="Addition: folder where finished ads are written.")
    urls_accepted: bool = Field(True, description="Addition: product_image_url (public http(s) URLs) is accepted.")
    private_urls_accepted: bool = Field(False, description="Addition: URLs on loopback/private addresses too.")


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one short line for a caller (MCP tool error or REST 422), inputs not echoed."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = _ERROR_PHRASES.get(err["type"]) or err["msg"]
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if msg.startswith("Input should"):  # pydantic's wording -> 'field: should be ...'
            msg = msg[len("Input "):]
        # A model-level message, or one that already names its field, stands alone.
        parts.append(msg if not loc or msg.startswith(loc) else f"{loc}: {msg}")
    return "; ".join(parts[:8])


_ERROR_PHRASES = {"missing": "required", "extra_forbidden": "unknown argument, not accepted (see the input schema)"}
