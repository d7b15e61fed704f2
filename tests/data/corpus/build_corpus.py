"""Rebuild the cut-out corpus from the packages named in tests/data/README.md.

Not run by the tests (they read the committed JPEG/PNG files). To rebuild, unpack the
sources first and point SRC at them:

    apt-get download tuxpaint-stamps-default mate-backgrounds opencv-doc
    for f in *.deb; do d=${f%%_*}; mkdir -p x/$d; dpkg -x $f x/$d; done
    pip download --no-deps scikit-image && unzip scikit_image-*.whl 'skimage/data/*' -d sk
    SRC=$PWD python tests/data/corpus/build_corpus.py

Composited cases take a real product photo with a real alpha channel (Tux Paint stamps)
and paste it onto a real photo or a studio-like backdrop; the stamp's alpha, thresholded
at 50 %, is the ground truth. Hand-annotated cases (`*.json`) are real photos with a
polygon drawn by hand around the product.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
SRC = Path(os.environ.get("SRC", "/tmp/src"))
STAMPS = SRC / "deb/x/tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
MATE = SRC / "deb/x/mate-backgrounds/usr/share/backgrounds/mate"
OPENCV = SRC / "deb/x/opencv-doc/usr/share/doc/opencv-doc/examples/data"
SKIMAGE = SRC / "sk/skimage/data"

# name: (product stamp, background, background crop (x0,y0,x1,y1 fractions), out size (w,h),
#        product long side as a fraction of min(w,h), centre (fx, fy), contact shadow)
PLAIN_BACKDROPS = {
    "white": ((249, 249, 247), (238, 238, 236)),
    "lightgrey": ((232, 233, 235), (205, 206, 209)),
    "beige": ((236, 226, 208), (214, 202, 182)),
    "paleblue": ((204, 221, 238), (180, 198, 218)),
    "darkgrey": ((70, 72, 76), (40, 41, 44)),
    "sage": ((196, 210, 190), (170, 186, 166)),
}

COMPOSITES = [
    # plain: studio-like backdrops
    ("p_avocado_white", "food/fruit/avocado.png", "white", None, (640, 480), 0.62, (0.5, 0.52), True),
    ("p_camera_lightgrey", "hobbies/camera_35mm.png", "lightgrey", None, (640, 480), 0.60, (0.5, 0.5), True),
    ("p_kettle_beige", "household/kettle.png", "beige", None, (480, 600), 0.55, (0.5, 0.55), True),
    ("p_orange_paleblue", "food/fruit/orange_seville.png", "paleblue", None, (560, 560), 0.58, (0.47, 0.5), True),
    ("p_toolbox_white", "household/tools/toolbox.png", "white", None, (640, 480), 0.70, (0.5, 0.55), True),
    ("p_trumpet_lightgrey", "hobbies/music/brass/trumpet.png", "lightgrey", None, (640, 400), 0.85, (0.5, 0.5), False),
    ("p_bulb_darkgrey", "household/Lightbulb.png", "darkgrey", None, (480, 640), 0.62, (0.5, 0.5), False),
    ("p_cherries_white", "food/fruit/Cherry_Stella.png", "white", None, (520, 600), 0.62, (0.5, 0.5), True),
    ("p_drum_sage", "hobbies/music/percussion/drum_tomtom_floor.png", "sage", None, (480, 600), 0.72, (0.5, 0.5), True),
    ("p_cylinder_label_white", "household/cylinder.png@label", "white", None, (480, 640), 0.78, (0.5, 0.5), True),
    # cluttered: real photos as backgrounds
    ("c_cherimoya_meadow", "food/fruit/cherimoya.png", "mate:nature/GreenMeadow.jpg", (0.1, 0.2, 0.8, 0.9), (560, 560), 0.55, (0.5, 0.55), False),
    ("c_apricot_wood", "food/fruit/Apricot_whole.png", "mate:nature/Wood.jpg", (0.2, 0.2, 0.7, 0.75), (600, 480), 0.55, (0.45, 0.5), False),
    ("c_camera_brick", "hobbies/camera_35mm.png", "sk:brick.png", (0.0, 0.0, 1.0, 1.0), (560, 560), 0.55, (0.5, 0.5), False),
    ("c_strawberry_ladybird", "food/fruit/Strawberry2.png", "mate:nature/LadyBird.jpg", (0.0, 0.0, 0.75, 1.0), (480, 600), 0.60, (0.45, 0.5), False),
    ("c_kettle_stuff", "household/kettle.png", "cv:stuff.jpg", (0.0, 0.0, 1.0, 1.0), (640, 480), 0.50, (0.62, 0.45), False),
    ("c_bulb_gravel", "household/Lightbulb.png", "sk:gravel.png", (0.0, 0.0, 1.0, 1.0), (480, 560), 0.60, (0.5, 0.5), False),
    ("c_avocado_coffee", "food/fruit/avocado.png", "sk:coffee.png", (0.0, 0.0, 1.0, 1.0), (600, 400), 0.36, (0.16, 0.72), False),
    ("c_basketball_dune", "sports/basketball.png", "mate:nature/Dune.jpg", (0.3, 0.3, 0.8, 1.0), (560, 560), 0.45, (0.5, 0.6), False),
    ("c_toolbox_rubberwhale", "household/tools/toolbox.png", "cv:rubberwhale1.png", (0.0, 0.0, 1.0, 1.0), (600, 400), 0.65, (0.5, 0.5), False),
    ("c_orange_fruits", "food/fruit/orange_seville.png", "cv:fruits.jpg", (0.0, 0.0, 1.0, 1.0), (520, 480), 0.50, (0.55, 0.5), False),
    ("c_cylinder_garden", "household/cylinder.png", "mate:nature/Garden.jpg", (0.0, 0.1, 0.7, 1.0), (480, 640), 0.72, (0.4, 0.5), False),
    ("c_duck_aqua", "household/rubberduck.png", "mate:nature/Aqua.jpg", (0.2, 0.1, 0.9, 0.9), (600, 480), 0.45, (0.5, 0.55), False),
    ("c_mixer_astronaut", "household/tools/cementmixer.png", "sk:astronaut.png", (0.0, 0.0, 1.0, 1.0), (560, 560), 0.60, (0.6, 0.55), False),
    ("c_kiwi_gravel", "food/fruit/kiwi.png", "sk:gravel.png", (0.0, 0.0, 1.0, 1.0), (520, 520), 0.45, (0.45, 0.5), False),
    ("c_cherries_wood", "food/fruit/Cherry_Stella.png", "mate:nature/Wood.jpg", (0.4, 0.3, 0.9, 0.9), (480, 560), 0.60, (0.5, 0.5), False),
    ("c_compostbin_meadow", "household/home_compost_bin.png", "mate:nature/GreenMeadow.jpg", (0.0, 0.0, 0.6, 1.0), (480, 600), 0.65, (0.5, 0.55), False),
    ("c_cymbal_brick", "hobbies/music/percussion/cymbal_crash.png", "sk:brick.png", (0.0, 0.0, 1.0, 0.8), (600, 480), 0.70, (0.5, 0.5), False),
    ("c_drum_flower", "hobbies/music/percussion/drum_tomtom_floor.png", "mate:nature/FreshFlower.jpg", (0.0, 0.0, 1.0, 1.0), (480, 600), 0.70, (0.5, 0.5), False),
]


def load_background(spec: str, crop, size) -> Image.Image:
    if spec in PLAIN_BACKDROPS:
        top, bottom = (np.array(c, np.float32) for c in PLAIN_BACKDROPS[spec])
        w, h = size
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] ** 1.6  # studio sweep
        img = top * (1 - t) + bottom * t
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
        img = img * (1 - 0.10 * r[..., None] ** 2)  # light fall-off to the corners
        img = np.broadcast_to(img, (h, w, 3)).copy()
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    kind, name = spec.split(":", 1)
    root = {"mate": MATE, "cv": OPENCV, "sk": SKIMAGE}[kind]
    bg = Image.open(root / name).convert("RGB")
    W, H = bg.size
    x0, y0, x1, y1 = crop
    bg = bg.crop((round(x0 * W), round(y0 * H), round(x1 * W), round(y1 * H)))
    # cover-resize to the output size
    w, h = size
    s = max(w / bg.width, h / bg.height)
    bg = bg.resize((max(w, round(bg.width * s)), max(h, round(bg.height * s))), Image.LANCZOS)
    ox, oy = (bg.width - w) // 2, (bg.height - h) // 2
    return bg.crop((ox, oy, ox + w, oy + h))


def load_product(spec: str) -> Image.Image:
    name, _, variant = spec.partition("@")
    prod = Image.open(STAMPS / name).convert("RGBA")
    if variant == "label":
        # A white label printed on the cylinder, shaded like the metal under it.
        arr = np.asarray(prod).astype(np.float32)
        h, w = arr.shape[:2]
        a = arr[..., 3]
        rows = slice(int(h * 0.42), int(h * 0.62))
        lum = arr[rows, :, :3].mean(axis=2)
        inside = a[rows] > 250
        cols = np.flatnonzero(inside.mean(axis=0) > 0.95)
        inset = round(0.16 * (cols.max() - cols.min()))
        lo, hi = cols.min() + inset, cols.max() - inset
        shade = np.clip(lum / np.percentile(lum[inside], 90), 0.55, 1.0)
        label = np.clip(252 * (0.80 + 0.20 * shade), 0, 255)
        band = arr[rows, lo:hi, :3]
        band[:] = label[:, lo:hi, None]
        arr[rows, lo:hi, :3] = band
        prod = Image.fromarray(arr.astype(np.uint8), "RGBA")
    return prod


def composite(bg: Image.Image, prod: Image.Image, frac: float, centre, shadow: bool, seed: int):
    w, h = bg.size
    long_side = frac * min(w, h)
    s = long_side / max(prod.size)
    prod = prod.resize((max(1, round(prod.width * s)), max(1, round(prod.height * s))), Image.LANCZOS)
    x = round(centre[0] * w - prod.width / 2)
    y = round(centre[1] * h - prod.height / 2)
    canvas = bg.convert("RGB")
    if shadow:
        # A soft contact shadow on the backdrop under the product (not part of the product).
        a = np.zeros((h, w), np.float32)
        pa = np.asarray(prod.getchannel("A"), np.float32) / 255
        ys = np.flatnonzero(pa.max(axis=1) > 0.5)
        foot = ys.max()
        ell = np.zeros((h, w), np.uint8)
        cx, cy = x + prod.width // 2, y + foot
        cv2.ellipse(ell, (cx, cy), (int(prod.width * 0.45), max(3, int(prod.height * 0.05))), 0, 0, 360, 255, -1)
        a = cv2.GaussianBlur(ell.astype(np.float32) / 255, (0, 0), max(2.0, prod.width * 0.04)) * 0.45
        arr = np.asarray(canvas, np.float32) * (1 - a[..., None])
        canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    canvas.paste(prod, (x, y), prod)
    truth = Image.new("L", (w, h), 0)
    truth.paste(prod.getchannel("A"), (x, y))
    # Photographic finish: a touch of blur and sensor noise over everything.
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.5))
    rng = np.random.default_rng(seed)
    arr = np.asarray(canvas, np.float32) + rng.normal(0, 2.0, (h, w, 3))
    canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return canvas, (np.asarray(truth) >= 128)


# Real photos with a hand-drawn polygon around the product (pixel coordinates of the photo).
HAND_DRAWN = {
    "c_coffee_real": ("sk:coffee.png", [[[170,78],[178,58],[195,42],[220,30],[255,22],[290,19],[325,21],[355,27],[380,37],[398,52],[405,65],[412,66],[420,68],[423,75],[420,90],[418,100],[430,112],[445,125],[458,145],[468,168],[475,195],[478,225],[478,255],[473,280],[462,300],[453,317],[441,333],[427,347],[411,359],[393,370],[368,378],[343,383],[318,387],[293,388],[268,388],[243,387],[218,384],[193,380],[168,374],[143,367],[125,358],[110,347],[100,336],[93,323],[88,305],[84,285],[79,255],[78,220],[80,190],[87,160],[98,135],[115,112],[135,95],[155,83]]]),
}


def main() -> None:
    cases = json.loads((HERE / "cases.json").read_text()) if (HERE / "cases.json").exists() else {}
    for i, (name, prod, bgspec, crop, size, frac, centre, shadow) in enumerate(COMPOSITES):
        bg = load_background(bgspec, crop, size)
        photo, truth = composite(bg, load_product(prod), frac, centre, shadow, seed=i)
        photo.save(HERE / f"{name}.jpg", quality=90, optimize=True)
        Image.fromarray(truth.astype(np.uint8) * 255).convert("1").save(HERE / f"{name}.png", optimize=True)
        cases[name] = {
            "background": "plain" if name.startswith("p_") else "cluttered",
            "truth": f"{name}.png",
            "product": prod.split("@")[0],
            "backdrop": bgspec,
        }
    for name, (spec, polygons) in HAND_DRAWN.items():
        kind, fname = spec.split(":", 1)
        root = {"mate": MATE, "cv": OPENCV, "sk": SKIMAGE}[kind]
        photo = Image.open(root / fname).convert("RGB")
        assert max(photo.size) <= 640
        photo.save(HERE / f"{name}.jpg", quality=90, optimize=True)
        (HERE / f"{name}.json").write_text(json.dumps({"size": photo.size, "polygons": polygons}) + "\n")
        cases[name] = {
            "background": "plain" if name.startswith("p_") else "cluttered",
            "truth": f"{name}.json",
            "product": "hand-drawn polygon",
            "backdrop": spec,
        }
    # Real RGBA products for the alpha-channel tests (drop shadow, mode="alpha").
    (HERE / "products").mkdir(exist_ok=True)
    for stamp in ("food/fruit/avocado.png", "household/kettle.png"):
        Image.open(STAMPS / stamp).convert("RGBA").save(HERE / "products" / Path(stamp).name, optimize=True)
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
