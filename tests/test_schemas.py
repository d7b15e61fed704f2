"""Request validation: every field's limits, enums and cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.cssvalues import css_font_stack, parse_font_family, validate_color
from pipeline.schemas import GenerateRequest, StatusResponse

OK = {"product_image": "aGVsbG8="}


def test_defaults_follow_the_design_doc() -> None:
    req = GenerateRequest(**OK)
    assert req.start_step == 1 and req.strength == 0.6 and req.guidance_scale == 3.5
    assert req.use_qwen_analysis and req.use_llm_html and not req.test_mode
    assert set(StatusResponse.model_fields) >= {
        "job_id", "status", "progress_percent", "current_step", "sub_step", "message", "elapsed_sec",
        "eta_seconds", "step_eta_seconds", "system_metrics", "parameters", "step1_result", "step2_result",
        "final_result",
    }


@pytest.mark.parametrize(
    "update, needle",
    [
        ({"strength": 1.5}, "strength"),
        ({"guidance_scale": -1}, "guidance_scale"),
        ({"text_size": 4000}, "text_size"),
        ({"start_step": 3}, "start_step"),
        ({"text_position": "left"}, "text_position"),
        ({"font_weight": "heavy"}, "font_weight"),
        ({"seed": -1}, "seed"),
        ({"width": 5000}, "width"),
        ({"height": 100}, "height"),
        ({"text_content": "x" * 301}, "text_content"),
        ({"text_content": "bad\x00copy"}, "control character"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"text_color": "red; background: url(http://x)"}, "text_color"),
        ({"font_family": "Arial; } body {"}, "font"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(update: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest(**{**OK, **update})
    assert needle in str(info.value)


def test_step_rules() -> None:
    with pytest.raises(ValidationError, match="product_image"):
        GenerateRequest()
    with pytest.raises(ValidationError, match="step1_image"):
        GenerateRequest(start_step=2)
    assert GenerateRequest(start_step=2, step1_image="aGk=").start_step == 2
    with pytest.raises(ValidationError, match="not several"):
        GenerateRequest(product_image="aGk=", product_image_path="/x.png")


def test_blank_copy_means_no_text_and_parameters_hide_images() -> None:
    req = GenerateRequest(**OK, text_content="   ")
    assert req.text_content is None
    params = req.public_parameters()
    assert params["product_image"] == "<base64>" and "aGVsbG8" not in str(params)


@pytest.mark.parametrize(
    "value",
    ["#fff", "#FFD700", "rgb(10, 20, 30)", "rgba(0,0,0,.5)", "hsl(120 50% 50%)", "gold",
     "linear-gradient(45deg, #FFD700, #FFA500)", "radial-gradient(circle, white 10%, navy 90%)",
     "linear-gradient(to right, red, orange 50%, yellow)"],
)
def test_colours_accepted(value: str) -> None:
    assert validate_color(value) == value


@pytest.mark.parametrize(
    "value",
    ["url(http://127.0.0.1/x)", "red;x", "expression(alert(1))", "linear-gradient(45deg, url(a), red)",
     "#ff", "notacolour", "red}", "linear-gradient(45deg, red, blue) , url(x)", "var(--x)", "\\72 ed"],
)
def test_colours_refused(value: str) -> None:
    with pytest.raises(ValueError):
        validate_color(value)


def test_font_lists() -> None:
    assert parse_font_family("'NanumSquare', sans-serif") == ["NanumSquare", "sans-serif"]
    assert css_font_stack(["NanumSquare", "sans-serif"]) == '"NanumSquare", sans-serif'
    for bad in ('a"b', "x{y}", "a;b", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            parse_font_family(bad)
