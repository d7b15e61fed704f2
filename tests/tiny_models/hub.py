"""A local Hugging Face cache in hub layout, so the product loads the tiny models BY ID offline.

``models--org--name/snapshots/<commit>/...`` plus ``refs/main`` is what ``hf download`` leaves
behind; with ``HF_HUB_OFFLINE=1`` every ``from_pretrained(id, revision=...)`` resolves there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

TEST_ORG = "adgen-tiny"


def commit_for(repo_id: str) -> str:
    """A stable 40-hex commit id for a test repository (test data: no real repository has it)."""
    return hashlib.sha1(f"adgen tiny {repo_id}".encode()).hexdigest()


def publish(cache: Path, repo_id: str, build: Callable[[Path], Path]) -> str:
    """Build a model straight into the cache's snapshot folder; returns the commit it is under."""
    commit = commit_for(repo_id)
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    if not (root / "refs" / "main").exists():
        build(snapshot)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(commit)
    return commit


def build_all(cache: Path) -> dict[str, str]:
    """Every tiny model the diffusion backend loads, published under ``adgen-tiny/*``: role -> repo id."""
    from tests.tiny_models.flux import build_flux
    from tests.tiny_models.flux2_klein import build_flux2_klein
    from tests.tiny_models.flux_fill import build_flux_fill, build_flux_kontext
    from tests.tiny_models.qwen2vl import build_qwen2vl
    from tests.tiny_models.segmentation import build_sam_hq, build_vitmatte

    # flux: classic (FLUX.1 text-to-image + img2img); klein: fast (FLUX.2 [klein] inpainting); fill: quality;
    # kontext: quality's alternative pipeline (ADGEN_SCENE_PIPELINE=FluxKontextInpaintPipeline).
    repos = {"flux": (f"{TEST_ORG}/flux", build_flux), "klein": (f"{TEST_ORG}/flux2-klein", build_flux2_klein),
             "fill": (f"{TEST_ORG}/flux-fill", build_flux_fill), "kontext": (f"{TEST_ORG}/flux-kontext", build_flux_kontext),
             "seg": (f"{TEST_ORG}/sam-hq", build_sam_hq),
             "matting": (f"{TEST_ORG}/vitmatte", build_vitmatte), "vlm": (f"{TEST_ORG}/qwen2-vl", build_qwen2vl)}
    for repo_id, build in repos.values():
        publish(cache, repo_id, build)
    return {role: repo_id for role, (repo_id, _) in repos.items()}
