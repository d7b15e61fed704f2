"""Settings: defaults < config file < environment < explicit overrides; bad values name themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import Settings


def test_precedence_and_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "adgen.toml"
    cfg.write_text('flux_model = "black-forest-labs/FLUX.1-schnell"\nqueue_max = 4\nvram_budget_gb = 10.0\n')
    monkeypatch.setenv("ADGEN_CONFIG", str(cfg))
    monkeypatch.setenv("ADGEN_QUEUE_MAX", "9")
    monkeypatch.setenv("ADGEN_INPUT_DIRS", f"/srv/in{':'}/srv/more")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = Settings.from_env(vram_budget_gb=2.5)
    assert s.flux_model.endswith("schnell")  # from the file
    assert s.queue_max == 9  # the environment beats the file
    assert s.vram_budget_gb == 2.5  # explicit beats both
    assert s.input_dirs == [Path("/srv/in"), Path("/srv/more")] and s.offline


def test_bad_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADGEN_BACKEND", "quantum")
    with pytest.raises(ValidationError, match="backend"):
        Settings.from_env()
