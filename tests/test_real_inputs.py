"""Real photos in, real files out, through a real MCP client over a real job manager and worker.

Photos come from the corpus of openly licensed real photos (tests/data/corpus); sources are
paths, file:// URIs, URLs on a loopback HTTP server, base64, GIF animations and parent jobs.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from mcp import Client
from PIL import Image

from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.worker.stages.cutout import CONFIDENCE_THRESHOLD
from tests.conftest import EXAMPLE, REPO, png_b64
from tests.helpers import READY_S

pytestmark = pytest.mark.anyio
CORPUS = REPO / "tests" / "data" / "corpus"


@pytest.fixture(scope="module")
def photo_server() -> Iterator[str]:
    """A loopback HTTP server handing out the corpus photos (a real server, real sockets)."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(CORPUS), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
async def real_manager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JobManager]:
    root = tmp_path_factory.mktemp("real")
    settings = Settings(data_dir=root / "data", output_dir=root / "out", input_dirs=[CORPUS, EXAMPLE.parent],
                        allow_private_urls=True)
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        yield m


async def _generate(manager: JobManager, **args: object) -> dict:
    async with Client(build_server(manager), mode="legacy") as client:
        result = await client.call_tool("generate_ad", {"use_qwen_analysis": False, "wait_seconds": 50, **args})
    assert not result.is_error, result.content[0].text
    st = result.structured_content
    assert st["status"] == "completed", st
    return st


def _job_image(manager: JobManager, job_id: str, name: str) -> Image.Image:
    path = manager.artifact(job_id, name)
    assert path is not None, name
    return Image.open(path)


async def test_relative_path_file_uri_and_url_give_the_same_photo(real_manager: JobManager, photo_server: str) -> None:
    runs = [
        {"product_image_path": "c_kiwi_gravel.jpg"},  # relative: resolved in the input folders, not the cwd
        {"product_image": (CORPUS / "c_kiwi_gravel.jpg").as_uri()},  # a file:// URI in product_image itself
        {"product_image_url": f"{photo_server}/c_kiwi_gravel.jpg"},
    ]
    hashes = set()
    for source in runs:
        st = await _generate(real_manager, text_content="Kiwi", width=512, height=512, seed=3, **source)
        product = real_manager.artifact(st["job_id"], "product.png")
        assert product is not None
        hashes.add(hashlib.sha256(np.asarray(Image.open(product)).tobytes()).hexdigest())
    assert len(hashes) == 1


async def test_url_to_loopback_is_refused_by_default(tmp_path: Path, photo_server: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", output_dir=tmp_path / "o")
    async with JobManager(settings) as m, Client(build_server(m), mode="legacy") as client:
        url = f"{photo_server}/c_kiwi_gravel.jpg"
        result = await client.call_tool("generate_ad", {"product_image_url": url, "text_content": "x"})
        outside = await client.call_tool("generate_ad", {"product_image": "/etc/passwd.png", "text_content": "x"})
    assert result.is_error and "product_image_url" in result.content[0].text
    assert "loopback" in result.content[0].text or "private" in result.content[0].text
    assert outside.is_error and "input folders" in outside.content[0].text and "passwd" not in outside.content[0].text


async def test_delivered_file_has_exact_size_format_and_readable_name(real_manager: JobManager) -> None:
    st = await _generate(real_manager, product_image_path="c_cherimoya_meadow.jpg", text_content="가을 신상 30% 할인",
                         width=1080, height=1350, output_format="webp", quality=80)
    out = Path(st["output_file"])
    assert out.is_absolute() and out.parent == real_manager.settings.output_dir.resolve()
    assert out.name.endswith(f"_{st['job_id'][:8]}.webp") and "가을-신상-30-할인" in out.name
    with Image.open(out) as img:
        assert img.format == "WEBP" and img.size == (1080, 1350)
    assert _job_image(real_manager, st["job_id"], "final.png").size == (1080, 1350)


async def test_clean_cutout_is_kept_and_artifacts_keep_one_meaning(real_manager: JobManager) -> None:
    st = await _generate(real_manager, product_image_path="p_camera_lightgrey.jpg", text_content="Snap it", seed=5,
                         width=768, height=768)
    assert st["cutout_confidence"] >= CONFIDENCE_THRESHOLD and not any("card" in w for w in st["warnings"])
    photo = _job_image(real_manager, st["job_id"], "product.png")
    cut = _job_image(real_manager, st["job_id"], "cutout.png")
    # cutout.png: the product at the photo's own resolution, cropped to its box, with real transparency.
    assert cut.mode == "RGBA" and cut.width < photo.width and cut.height < photo.height
    alpha = np.asarray(cut.getchannel("A"))
    assert (alpha == 0).mean() > 0.02 and (alpha == 255).mean() > 0.5
    # mask.png: the product on the final canvas.
    assert _job_image(real_manager, st["job_id"], "mask.png").size == (768, 768)


async def test_untrustworthy_cutout_becomes_a_framed_card_and_says_so(real_manager: JobManager) -> None:
    st = await _generate(real_manager, product_image_path="c_mixer_astronaut.jpg", text_content="Mixer sale",
                         width=768, height=768)
    assert st["cutout_confidence"] < CONFIDENCE_THRESHOLD
    assert any("framed card" in w for w in st["warnings"])
    photo = _job_image(real_manager, st["job_id"], "product.png")
    card = _job_image(real_manager, st["job_id"], "cutout.png")
    # The whole photo, framed: larger than the photo by its border, corners transparent, middle opaque.
    assert card.width > photo.width and card.height > photo.height
    alpha = np.asarray(card.getchannel("A"))
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0 and (alpha[5:-5, 5:-5] == 255).mean() > 0.98


async def test_gif_animation_first_frame_and_small_photo_warning(real_manager: JobManager) -> None:
    frames = [Image.new("RGB", (96, 96), (240, 240, 240)) for _ in range(3)]
    for i, f in enumerate(frames):
        f.paste((200, 40 + 80 * i, 40), (28, 20, 68, 80))
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    st = await _generate(real_manager, product_image=base64.b64encode(buf.getvalue()).decode(), text_content="GIF",
                         width=1024, height=1024)
    assert any("first frame" in w for w in st["warnings"])
    assert any("enlarged" in w for w in st["warnings"])
    first = np.asarray(_job_image(real_manager, st["job_id"], "product.png").convert("RGB"))
    assert tuple(first[50, 48]) == (200, 40, 40)  # the first frame's colour, not a later one


async def test_parent_job_resume_keeps_step1_pixels(real_manager: JobManager) -> None:
    first = await _generate(real_manager, product_image_path="p_orange_paleblue.jpg", text_content="Orange",
                            width=640, height=640, seed=9)
    second = await _generate(real_manager, start_step=2, parent_job_id=first["job_id"], text_content="Fresh orange",
                             width=640, height=640)
    assert second["parent_job_id"] == first["job_id"]
    a = np.asarray(_job_image(real_manager, first["job_id"], "step1.png"))
    b = np.asarray(_job_image(real_manager, second["job_id"], "step1.png"))
    assert np.array_equal(a, b)
    assert not np.array_equal(np.asarray(_job_image(real_manager, first["job_id"], "text.png")),
                              np.asarray(_job_image(real_manager, second["job_id"], "text.png")))


async def test_product_mask_and_cutout_none_are_obeyed(real_manager: JobManager) -> None:
    photo = Image.open(EXAMPLE).convert("RGB")
    mask = Image.new("L", photo.size, 0)
    w, h = photo.size
    mask.paste(255, (w // 4, h // 4, w // 2, h // 2))  # deliberately not the product: the mask must win
    st = await _generate(real_manager, product_image=png_b64(photo), product_mask=png_b64(mask), text_content="M",
                         width=512, height=512)
    cut = _job_image(real_manager, st["job_id"], "cutout.png")
    assert abs(cut.width - w // 4) <= 2 and abs(cut.height - h // 4) <= 2 and st["cutout_confidence"] == 1.0
    whole = await _generate(real_manager, product_image=png_b64(photo), cutout="none", text_content="W",
                            width=512, height=512)
    assert _job_image(real_manager, whole["job_id"], "cutout.png").size == photo.size
