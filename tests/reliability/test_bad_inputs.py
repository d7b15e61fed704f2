"""Hostile and broken inputs, fixed and generated: each gets a clear error, the server keeps serving.

Runs against one real server process over streamable HTTP (MCP) and its REST routes; after
the whole barrage the next job still succeeds and the worker is the same process.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from PIL import Image

from tests.conftest import ARTIFACTS, ServerProcess, png_b64

pytestmark = pytest.mark.anyio


def _png_bytes(size=(64, 64), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int = 20_000, height: int = 10_000) -> bytes:
    """A 200-megapixel PNG of a few hundred KB: the header says huge, the zlib stream is tiny."""
    buf = io.BytesIO()
    Image.new("1", (width, height), 0).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _fmt(fmt: str) -> str:
    return png_b64(Image.new("RGB", (64, 64), 90), fmt)


B64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731

# (name, arguments, words expected in the error)
FIXED_CASES = [
    ("invalid base64", {"product_image": "####"}, "base64"),
    ("non-image bytes", {"product_image": B64(b"%PDF-1.7 not an image at all" * 10)}, "not a readable image"),
    ("truncated PNG", {"product_image": B64(_png_bytes()[:60])}, "not a readable image"),
    ("truncated JPEG", {"product_image": B64(_jpeg_bytes()[:300])}, "not a readable image"),
    ("200-megapixel bomb", {"product_image": B64(_bomb_png())}, "megapixel limit"),
    ("BMP", {"product_image": _fmt("BMP")}, "format BMP"),
    ("TIFF", {"product_image": _fmt("TIFF")}, "format TIFF"),
    ("tiny image", {"product_image": B64(_png_bytes((4, 4)))}, "too small"),
    ("control characters", {"product_image": "PB64", "text_content": "sale\x07\x1b[31m"}, "control character"),
    ("16 KB of copy", {"product_image": "PB64", "text_content": "가" * 16_384}, "text_content"),
    ("zero-width only base64", {"product_image": "\u200b"}, "base64"),
    ("path outside input folders", {"product_image_path": "/etc/hostname"}, "input folders"),
    ("path traversal", {"product_image_path": "../../../../etc/passwd"}, "input folders"),
    ("unknown field", {"product_image": "PB64", "exec": "rm -rf /"}, "exec"),
    ("text_color injection", {"product_image": "PB64", "text_color": "red;}</style><script>"}, "text_color"),
    ("font injection", {"product_image": "PB64", "font_family": "x'; @import url(//evil)"}, "font"),
    ("unknown font", {"product_image": "PB64", "font_family": "Definitely Not A Font"}, "unknown font"),
    ("uncoverable glyph", {"product_image": "PB64", "text_content": "\ue000\ue001"}, "no installed font"),
    ("resume without image", {"start_step": 2, "text_content": "x"}, "step1_image"),
]
OUT_OF_RANGE = {
    "start_step": [0, 3, "one"], "strength": [-0.1, 1.01, "high"], "guidance_scale": [-1, 31],
    "text_size": [7, 401, 3.5], "seed": [-1, 2**32], "width": [128, 4097, 10_000], "height": [100, 4100],
    "text_position": ["left", ""], "font_weight": ["heavy", "1000"], "use_qwen_analysis": ["maybe"],
    "use_llm_html": [[]], "test_mode": [{}], "bg_prompt": ["x" * 2001], "wait_seconds": [-1, 61],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("rel") / "data"
    inputs = tmp_path_factory.mktemp("inputs")
    (inputs / "ok.png").write_bytes(_png_bytes((300, 300)))
    os.symlink("/etc/hostname", inputs / "escape.png")
    proc = ServerProcess("streamable-http", data, {"ADGEN_INPUT_DIRS": str(inputs)})
    proc.wait_healthy()
    proc.inputs = inputs
    yield proc
    proc.stop()


async def _call(url: str, args: dict) -> tuple[bool, str]:
    async with Client(url, mode="legacy") as client:
        res = await client.call_tool("generate_ad", {"wait_seconds": 0, **args})
    text = res.content[0].text if res.content else ""
    return res.is_error, text


async def test_fixed_bad_inputs(server, product_b64: str) -> None:
    pid_before = httpx.get(server.base + "/resources").json()["worker_pid"]
    outcomes = []
    for name, args, words in FIXED_CASES:
        args = {k: (product_b64 if v == "PB64" else v) for k, v in args.items()}
        is_error, text = await _call(server.base + "/mcp", args)
        outcomes.append({"case": name, "error": is_error, "message": text[:200]})
        assert is_error, name
        assert words in text, (name, text)
        assert len(text) < 2000 and "Traceback" not in text, name
    for field, values in OUT_OF_RANGE.items():
        for value in values:
            args = {"product_image": product_b64, field: value}
            is_error, text = await _call(server.base + "/mcp", args)
            outcomes.append({"case": f"{field}={str(value)[:20]}", "error": is_error, "message": text[:160]})
            assert is_error and field in text, (field, value, text)
    # A symlink inside the input folder that points outside it is refused too.
    is_error, text = await _call(server.base + "/mcp", {"product_image_path": str(server.inputs / "escape.png")})
    assert is_error and "not a readable file inside the input folders" in text and "hostname" not in text
    # Missing and existing-but-outside paths get the same answer: no file-existence oracle.
    _, missing = await _call(server.base + "/mcp", {"product_image_path": "/no/such/file.png"})
    _, existing = await _call(server.base + "/mcp", {"product_image_path": "/etc/hostname"})
    assert missing == existing
    # ...while a real file inside is accepted.
    ok_error, _ = await _call(server.base + "/mcp", {"product_image_path": str(server.inputs / "ok.png"),
                                                     "text_content": "path ok", "width": 256, "height": 256})
    assert not ok_error
    assert httpx.get(server.base + "/resources").json()["worker_pid"] == pid_before  # the worker never died
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bad_inputs.json").write_text(json.dumps(outcomes, ensure_ascii=False, indent=1))


async def test_rest_body_limits_and_junk(server, product_b64: str) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as http:
        big = b'{"product_image": "' + b"A" * (41 * 1024 * 1024) + b'"}'
        r = await http.post("/generate", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "MiB" in r.json()["detail"]
        for junk in (b"", b"[]", b"null", b'{"product_image": 5}', b"\xff\xfe\x00", b'{"a":' * 5000):
            r = await http.post("/generate", content=junk, headers={"content-type": "application/json"})
            assert r.status_code == 422, junk[:20]
        r = await http.post("/mcp", content=b"x" * (5 * 1024 * 1024),
                            headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
        assert r.status_code in (400, 413)
        assert (await http.get("/health")).json()["worker_alive"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    payload=st.dictionaries(
        st.sampled_from(["product_image", "text_content", "strength", "seed", "text_position", "text_color",
                         "font_family", "width", "start_step", "step1_image", "bg_prompt"]),
        st.one_of(st.text(max_size=200), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
                  st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())),
        max_size=6,
    )
)
def test_generated_requests_never_break_the_server(server, payload: dict) -> None:
    # Python's json writes NaN/Infinity tokens, which the server must refuse cleanly too.
    r = httpx.post(server.base + "/generate", content=json.dumps(payload), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code in (200, 422, 503), r.text
    if r.status_code != 200:
        assert r.json()["detail"]
    else:
        httpx.post(server.base + f"/stop/{r.json()['job_id']}", timeout=30)


async def test_next_job_succeeds_after_everything(server, product_b64: str) -> None:
    async with Client(server.base + "/mcp", mode="legacy") as client:
        res = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "still fine"})
    assert res.structured_content["status"] == "completed"
    assert (await anyio.to_thread.run_sync(lambda: httpx.get(server.base + "/health").json()))["worker_alive"]


def test_bomb_helper_is_small() -> None:
    raw = _bomb_png()
    assert len(raw) < 1_000_000  # the payload is small; the declared size is 200 MP
    assert struct.unpack(">II", raw[16:24]) == (20_000, 10_000)  # IHDR width, height
