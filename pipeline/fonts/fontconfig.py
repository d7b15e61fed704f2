"""The fontconfig side of font discovery: the config file and the fc-list/fc-match calls.

One job: talk to fontconfig. ``fontconfig_file`` writes the config that adds the bundled fonts
to the system's; the renderer runs Chromium with the same file, so the catalogue and the text
layer see the same fonts. ``fc``/``fc_list`` run the tools over it; ``css_weight`` and
``font_id`` turn their answers into what list_fonts reports.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path


def fontconfig_file(fonts_dir: Path, include_system: bool = True) -> Path:
    """A fontconfig file that adds the bundled fonts to the system's (or uses them alone)."""
    system = "  <include ignore_missing=\"yes\">/etc/fonts/fonts.conf</include>\n" if include_system else ""
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"{system}  <dir>{fonts_dir.resolve()}</dir>\n"
        f"  <cachedir>{Path(tempfile.gettempdir()) / 'adgen-fontcache'}</cachedir>\n</fontconfig>\n"
    )
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    conf = Path(tempfile.gettempdir()) / f"adgen-fonts-{os.getuid()}-{digest}.conf"
    if not conf.exists() or conf.read_text() != text:
        tmp = conf.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, conf)
    return conf


# fontconfig weight -> CSS weight
_WEIGHTS = {
    0: 100, 40: 200, 50: 300, 55: 350, 75: 400, 80: 400, 100: 500, 180: 600, 200: 700, 205: 800, 210: 900, 215: 950,
}


def css_weight(fc_weight: str) -> int:
    """The CSS weight (100-950) nearest a fontconfig weight."""
    try:
        w = int(float(fc_weight))
    except ValueError:
        return 400
    return _WEIGHTS.get(w, min(_WEIGHTS.values(), key=lambda v: abs(v - w * 4)))


def fc(conf: Path, args: list[str]) -> list[str]:
    """The output lines of a fontconfig tool run over ``conf`` (none if it fails or hangs)."""
    env = dict(os.environ, FONTCONFIG_FILE=str(conf))
    try:
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines()


def fc_list(conf: Path, pattern: str, fmt: str) -> list[str]:
    return fc(conf, ["fc-list", pattern, "--format", fmt])


def font_id(family: str) -> str:
    """The stable id list_fonts gives a family (lower case, dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")
