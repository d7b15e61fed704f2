"""Provenance: what made an image, written into every file a job delivers and reported in its status.

PNG files carry iTXt text chunks (``Software``, ``Description``, ``adgen:provenance`` with the JSON
below) and an XMP packet (the ``XML:com.adobe.xmp`` iTXt chunk); JPEG and WebP carry the same XMP
packet and EXIF ``ImageDescription``/``Software``. The XMP states the IPTC digital source type
(``Iptc4xmpExt:DigitalSourceType``): a real product photo composited with a scene from a trained
model is ``compositeWithTrainedAlgorithmicMedia``; with the draft backend's procedural scene (no
trained model) it is ``compositeSynthetic``; a fully generated image would be
``trainedAlgorithmicMedia``.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, PngImagePlugin

if TYPE_CHECKING:
    from pipeline.worker.context import JobContext

IPTC_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
COMPOSITE_WITH_TRAINED = IPTC_SOURCE + "compositeWithTrainedAlgorithmicMedia"
TRAINED = IPTC_SOURCE + "trainedAlgorithmicMedia"
COMPOSITE_SYNTHETIC = IPTC_SOURCE + "compositeSynthetic"
ALGORITHMIC = IPTC_SOURCE + "algorithmicMedia"
COMPOSITE = IPTC_SOURCE + "composite"  # elements of unknown origin (a step 1 image a client uploaded)
PNG_KEY = "adgen:provenance"
XMP_PNG_KEY = "XML:com.adobe.xmp"
_NS = "https://adgen.invalid/ns/provenance/1.0/"  # adgen's own XMP properties

# Licences of the models adgen configures by default or documents; a backend's info() may state its own
# ("license" on a model entry), which wins. Anything else is reported as unknown, never guessed.
KNOWN_LICENSES = {
    "black-forest-labs/FLUX.1-dev": "FLUX.1 [dev] Non-Commercial License",
    "black-forest-labs/FLUX.1-Fill-dev": "FLUX.1 [dev] Non-Commercial License",
    "black-forest-labs/FLUX.1-Kontext-dev": "FLUX.1 [dev] Non-Commercial License",
    "black-forest-labs/FLUX.1-schnell": "Apache-2.0",
    "black-forest-labs/FLUX.2-klein-4B": "Apache-2.0",
    "Qwen/Qwen2-VL-2B-Instruct": "Apache-2.0",
    "Qwen/Qwen2-VL-7B-Instruct": "Apache-2.0",
    "syscv-community/sam-hq-vit-base": "Apache-2.0",
    "syscv-community/sam-hq-vit-large": "Apache-2.0",
    "syscv-community/sam-hq-vit-huge": "Apache-2.0",
    "hustvl/vitmatte-small-composition-1k": "Apache-2.0",
    "hustvl/vitmatte-base-composition-1k": "Apache-2.0",
    "onnx-community/BiRefNet-ONNX": "MIT",
}
UNKNOWN_LICENSE = "unknown (see the model card)"


def generator() -> str:
    try:
        return f"adgen {version('adgen')}"
    except PackageNotFoundError:  # a source checkout that was never installed
        return "adgen (unversioned)"


def digital_source_type(trained_model: bool, has_photo: bool) -> str:
    """The IPTC term for an image from a trained model or a classical algorithm, with or without a real photo."""
    if has_photo:
        return COMPOSITE_WITH_TRAINED if trained_model else COMPOSITE_SYNTHETIC
    return TRAINED if trained_model else ALGORITHMIC


def model_entries(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The backend's models (``info()["models"]``: a list, or a dict by role) with their licences."""
    raw = info.get("models") or []
    items = [{"role": role, **entry} for role, entry in raw.items()] if isinstance(raw, dict) else list(raw)
    out = []
    for entry in items:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        model_id = str(entry["id"])
        licence = entry.get("license") or entry.get("licence")
        if not licence:
            licence = KNOWN_LICENSES.get(model_id) or (
                "unknown (local folder)" if Path(model_id).expanduser().exists() else UNKNOWN_LICENSE)
        out.append({"role": str(entry.get("role", "")), "id": model_id, "revision": entry.get("revision"),
                    "license": str(licence)})
    return out


def _profile(info: dict[str, Any], backend: str) -> str:
    flux = info.get("flux")
    profile = info.get("profile") or (flux.get("profile") if isinstance(flux, dict) else None)
    return str(profile or backend)


def job_provenance(ctx: JobContext) -> dict[str, Any]:
    """What made this job's image. Step 2 jobs inherit their step 1 image's provenance when it has one."""
    r = ctx.request
    common = {"generator": generator(), "job_id": ctx.job_id,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if ctx.designer:
        common["text_layer"] = ctx.designer  # who designed the copy's HTML (rendered by Chromium)
    if r.start_step == 2:
        parent = read_png(ctx.job_dir / "step1.png")
        if parent is not None:
            return {**parent, **common, "step1_from": parent.get("job_id")}
        return {**common, "backend": None, "profile": None, "models": [], "seed": None, "relight": None,
                "step1_from": "client upload", "digital_source_type": COMPOSITE}
    info = ctx.backend.info()
    prov: dict[str, Any] = {
        **common, "backend": ctx.backend.name, "profile": _profile(info, ctx.backend.name),
        "models": model_entries(info), "seed": ctx.seed, "relight": r.relight,
        "digital_source_type": digital_source_type(ctx.backend.name != "draft", has_photo=True),
    }
    if ctx.refine_seed is not None and ctx.refine_seed != ctx.seed:
        prov["refine_seed"] = ctx.refine_seed
    return prov


# ---- writing and reading ------------------------------------------------------------------
def _models_text(prov: dict[str, Any]) -> str:
    models = prov.get("models") or []
    if not models:
        return "none"
    return "; ".join(f"{m['role']}: {m['id']}@{m.get('revision') or 'local'} ({m['license']})" for m in models)


def description(prov: dict[str, Any]) -> str:
    """One sentence for people (PNG Description, EXIF ImageDescription, dc:description)."""
    source = str(prov.get("digital_source_type", "")).removeprefix(IPTC_SOURCE)
    return (f"Advertising image made by {prov.get('generator')} (backend {prov.get('backend') or 'unknown'}, "
            f"profile {prov.get('profile') or 'unknown'}, models: {_models_text(prov)}, seed {prov.get('seed')}); "
            f"IPTC digital source type: {source}.")


def xmp_packet(prov: dict[str, Any]) -> bytes:
    """An XMP packet with the IPTC digital source type, xmp:CreatorTool and adgen's own properties."""
    attrs = {
        "Iptc4xmpExt:DigitalSourceType": prov.get("digital_source_type"),
        "xmp:CreatorTool": prov.get("generator"), "xmp:CreateDate": prov.get("created"),
        "adgen:Backend": prov.get("backend"), "adgen:Profile": prov.get("profile"), "adgen:Seed": prov.get("seed"),
        "adgen:RefineSeed": prov.get("refine_seed"), "adgen:Relight": prov.get("relight"),
        "adgen:JobId": prov.get("job_id"), "adgen:Step1From": prov.get("step1_from"),
        "adgen:TextLayer": prov.get("text_layer"),
    }
    attr_text = "".join(f"\n    {k}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None)
    models = prov.get("models") or []
    items = "".join(
        "\n      <rdf:li rdf:parseType=\"Resource\">"
        f"<adgen:Role>{escape(str(m['role']))}</adgen:Role><adgen:Id>{escape(str(m['id']))}</adgen:Id>"
        f"<adgen:Revision>{escape(str(m.get('revision') or 'local'))}</adgen:Revision>"
        f"<adgen:License>{escape(str(m['license']))}</adgen:License></rdf:li>"
        for m in models
    ) or "\n      <rdf:li>none</rdf:li>"
    xml = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:adgen="{_NS}"{attr_text}>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(description(prov))}</rdf:li></rdf:Alt></dc:description>
   <adgen:Models>
    <rdf:Bag>{items}
    </rdf:Bag>
   </adgen:Models>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""
    return xml.encode("utf-8")


def _exif(prov: dict[str, Any]) -> Image.Exif:
    exif = Image.Exif()
    # EXIF ASCII fields: keep them 7-bit (the XMP packet carries the full text in UTF-8).
    exif[0x010E] = description(prov).encode("ascii", "replace").decode("ascii")  # ImageDescription
    exif[0x0131] = str(prov.get("generator", "adgen")).encode("ascii", "replace").decode("ascii")  # Software
    return exif


def save_kwargs(fmt: str, prov: dict[str, Any] | None) -> dict[str, Any]:
    """Extra keyword arguments for ``Image.save`` that embed ``prov`` in a PNG, JPEG or WebP file."""
    if prov is None:
        return {}
    xmp = xmp_packet(prov)
    if fmt.lower() == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("Software", str(prov.get("generator", "adgen")))
        info.add_itxt("Description", description(prov))
        info.add_itxt(PNG_KEY, json.dumps(prov, ensure_ascii=False, sort_keys=True))
        info.add_itxt(XMP_PNG_KEY, xmp.decode("utf-8"))  # XMP in PNG: uncompressed iTXt, this exact keyword
        return {"pnginfo": info, "exif": _exif(prov)}
    return {"xmp": xmp, "exif": _exif(prov)}


def png_chunks(prov: dict[str, Any]) -> bytes:
    """The chunks that carry ``prov`` in a PNG (the iTXt set and eXIf ``save_kwargs`` gives Pillow), as bytes
    to splice into a PNG another encoder made (``with_chunks``): Pillow writes them, on a 1x1 image."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG", **save_kwargs("png", prov))
    data, pos, kept = buf.getvalue(), 8, []
    while pos < len(data):
        end = pos + 12 + int.from_bytes(data[pos:pos + 4], "big")  # length, type, data, CRC
        if data[pos + 4:pos + 8] not in (b"IHDR", b"IDAT", b"IEND"):
            kept.append(data[pos:end])
        pos = end
    return b"".join(kept)


def with_chunks(png: bytes, chunks: bytes) -> bytes:
    """``png`` with ``chunks`` right after its header chunk (before any image data, where eXIf must be)."""
    ihdr_end = 8 + 12 + int.from_bytes(png[8:12], "big")
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def read_png(path: Path) -> dict[str, Any] | None:
    """The provenance JSON a PNG written by adgen carries, or None (missing file, other origin, unreadable)."""
    try:
        with Image.open(path) as img:
            text = img.info.get(PNG_KEY) if img.format == "PNG" else None
        value = json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_png(image: Image.Image, path: Path, prov: dict[str, Any] | None) -> Path:
    """A job-folder PNG with its provenance, written atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    # zlib Z_RLE: as fast as the default strategy at level 1, ~15% smaller (this file is also delivered as is).
    image.save(tmp, format="PNG", compress_level=1, compress_type=3, **save_kwargs("png", prov))
    tmp.replace(path)
    return path
