#!/usr/bin/env bash
# System packages the server needs: Debian's Chromium (Playwright's own browser download
# does not work offline), fontconfig, and the fallback fonts the text layer picks per script
# of the copy (pipeline/fonts.py SCRIPT_FONTS): emoji, CJK (JP/SC/TC/KR), and fonts-noto-core
# for Arabic, Hebrew, Thai, Devanagari and Latin/Cyrillic/Greek (12 MB download, the smallest
# package with Noto faces for all four; fonts-noto-extra is 72 MB).
# Idempotent: installs only what is missing (one file of each package is checked).
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v fc-list >/dev/null || need+=(fontconfig)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need+=(fonts-noto-cjk)
[ -e /usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf ] || need+=(fonts-noto-core)
# --test: the servers tests/test_distributed.py starts (distributed mode's Redis); never needed by `make demo`.
if [ "${1:-}" = "--test" ]; then command -v redis-server >/dev/null || need+=(redis-server); fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
