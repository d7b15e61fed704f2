# syntax=docker/dockerfile:1
# adgen for NVIDIA GPUs: Debian (its chromium is a real package, unlike Ubuntu's snap stub),
# Python 3.11, torch's own CUDA wheels, Hangul-capable fonts. Serves MCP over streamable HTTP.

# Build stage: the wheel (code, dashboard and the bundled fonts as package data adgen_fonts).
# The image installs that wheel, not the source tree, so it runs what a user's pip install runs.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcp_server ./mcp_server
COPY pipeline ./pipeline
COPY fonts ./fonts
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    ADGEN_DATA_DIR=/data/adgen \
    ADGEN_OUTPUT_DIR=/data/out \
    ADGEN_BACKEND=auto \
    ADGEN_CHROMIUM=/usr/lib/chromium/chromium

# Debian's chromium (Playwright drives it; its own browser download is not used), fontconfig,
# fallback fonts for the text layer (emoji, CJK, fonts-noto-core for Arabic, Hebrew, Thai,
# Devanagari), curl for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium=* fontconfig=* fonts-noto-cjk=* fonts-noto-core=* fonts-noto-color-emoji=* curl=* \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 adgen \
    && mkdir -p /data/hf /data/adgen /data/out \
    && chown -R adgen:adgen /data

WORKDIR /app
COPY examples ./examples
# Versions are pinned in pyproject.toml (torch 2.14.1's default Linux wheels are CUDA builds).
# The wheel is bind-mounted from the build stage, so no layer keeps a copy of it.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install "$(find /wheels -name 'adgen-*.whl')[models]"

USER 1000:1000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
# 0.0.0.0 inside the container; publish with -p 127.0.0.1:8000:8000 and set ADGEN_TOKEN when exposed.
ENTRYPOINT ["adgen-mcp", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "8000"]
