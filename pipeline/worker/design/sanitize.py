"""The LLM's HTML is untrusted input: keep only what a static text layer needs.

Parsing (not regex-stripping) the markup, we keep an allowlist of text tags with ``class``,
``id`` and a sanitised ``style``; every other tag is dropped (``script``/``style``/``iframe``
/... with their content), every other attribute too. CSS loses comments, at-rules
(``@import``, ``@font-face``...), anything with ``url(``, ``image-set(``, ``expression(``,
``\\`` escapes or ``behavior``. The document is then rebuilt from scratch by ``build_document``.
The renderer adds its own walls (JavaScript off, all non-``data:`` requests aborted).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from pipeline.fonts import copy_attributes
from pipeline.messages import MAX_ANSWER_CHARS

ALLOWED_TAGS = frozenset(
    "div span p h1 h2 h3 h4 h5 h6 br strong em b i u s small sup sub mark section header footer "
    "main article figure figcaption blockquote ul ol li".split()
)
VOID_TAGS = frozenset({"br"})
DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript", "textarea",
     "select", "title", "frame", "frameset", "applet", "audio", "video", "canvas", "xmp", "noembed"}
)
ALLOWED_ATTRS = frozenset({"class", "id", "style", "lang", "dir"})

_CSS_COMMENT = re.compile(r"/\*.*?(\*/|$)", re.S)
_FORBIDDEN_CSS = re.compile(
    r"url\s*\(|image-set\s*\(|image\s*\(|element\s*\(|expression\s*\(|cross-fade\s*\(|paint\s*\(|"
    r"\\|behavior|-moz-binding|javascript:|vbscript:|data:|@|<|src\s*\(",
    re.I,
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_\- ]{1,80}$")


@dataclass(frozen=True)
class Sanitised:
    css: str
    body: str
    text: str  # the visible text, for checking that the copy is there
    removed: tuple[str, ...]  # what was thrown away, for the job's notes


def extract_html(answer: str) -> str:
    """The HTML inside an LLM answer: a fenced block, or the document, or the whole answer."""
    fence = re.search(r"```(?:html)?\s*(.*?)```", answer, re.S | re.I)
    if fence:
        return fence.group(1)
    doc = re.search(r"<(?:!doctype|html).*?(?:</html>|$)", answer, re.S | re.I)
    return doc.group(0) if doc else answer


def sanitize_declarations(block: str) -> str:
    """Keep ``prop: value`` pairs that cannot fetch, execute or escape."""
    kept = []
    for decl in block.split(";"):
        if ":" not in decl:
            continue
        prop, value = decl.split(":", 1)
        prop, value = prop.strip().lower(), value.strip()
        if not re.fullmatch(r"-?[a-z][a-z0-9-]{0,40}", prop) or not value or _FORBIDDEN_CSS.search(value):
            continue
        if re.search(r"[{}]", value):
            continue
        kept.append(f"{prop}: {value}")
    return "; ".join(kept)


def sanitize_css(css: str) -> str:
    """Plain ``selector { declarations }`` rules only; at-rules and anything dangerous go."""
    css = _CSS_COMMENT.sub("", css)
    out = []
    # Drop at-rules whole, including nested blocks (@media, @font-face, @import ...;).
    while True:
        m = re.search(r"@[a-zA-Z-]+[^;{]*(;|\{)", css)
        if not m:
            break
        if m.group(1) == ";":
            css = css[: m.start()] + css[m.end():]
            continue
        depth, i = 1, m.end()
        while i < len(css) and depth:
            depth += {"{": 1, "}": -1}.get(css[i], 0)
            i += 1
        css = css[: m.start()] + css[i:]
    for selector, block in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        selector = selector.strip()
        if not selector or len(selector) > 200 or _FORBIDDEN_CSS.search(selector) or re.search(r"[<>\"'`]", selector):
            continue
        decls = sanitize_declarations(block)
        if decls:
            out.append(f"{selector} {{ {decls}; }}")
    return "\n".join(out)


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.css: list[str] = []
        self.text: list[str] = []
        self.removed: set[str] = set()
        self._drop_depth = 0
        self._drop_tag: str | None = None
        self._in_style = False
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if self._drop_depth:
            if tag == self._drop_tag:
                self._drop_depth += 1
            return
        if tag == "style":
            self._in_style = True
            return
        if tag in DROP_WITH_CONTENT:
            self.removed.add(tag)
            self._drop_depth, self._drop_tag = 1, tag
            return
        if tag not in ALLOWED_TAGS:
            if tag not in ("html", "body", "meta"):  # structure we rebuild ourselves is not worth a note
                self.removed.add(tag)
            return
        kept = []
        for name, value in attrs:
            name = name.lower()
            if name not in ALLOWED_ATTRS or value is None:
                self.removed.add(f"@{name}")
                continue
            if name == "style":
                value = sanitize_declarations(value)
                if not value:
                    continue
            elif name in ("class", "id") and not _NAME_RE.match(value):
                continue
            kept.append(f'{name}="{html.escape(value, quote=True)}"')
        self.parts.append(f"<{tag}{''.join(' ' + a for a in kept)}>")
        if tag not in VOID_TAGS:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag.lower() in self._open and tag.lower() not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if self._drop_depth:
            if tag == self._drop_tag:
                self._drop_depth -= 1
            return
        if tag == "style":
            self._in_style = False
            return
        if tag in self._open:
            while self._open:
                t = self._open.pop()
                self.parts.append(f"</{t}>")
                if t == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self._drop_depth:
            return
        if self._in_style:
            self.css.append(data)
            return
        self.parts.append(html.escape(data, quote=False))
        self.text.append(data)

    def close(self) -> None:
        super().close()
        while self._open:
            self.parts.append(f"</{self._open.pop()}>")


def sanitize_html(answer: str) -> Sanitised:
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValueError(f"the LLM answer is too large ({len(answer)} characters)")
    cleaner = _Cleaner()
    cleaner.feed(extract_html(answer))
    cleaner.close()
    return Sanitised(
        css=sanitize_css("\n".join(cleaner.css)),
        body="".join(cleaner.parts),
        text=" ".join(cleaner.text),
        removed=tuple(sorted(cleaner.removed)),
    )


def contains_copy(text: str, copy: str) -> bool:
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731 - line breaks may be moved by the designer
    return squash(copy) in squash(text)


def build_document(s: Sanitised, width: int, height: int, font_css: str = "") -> str:
    """Our own document around the sanitised parts: fixed canvas, transparent, nothing external
    (``font_css`` is ours: the embedded ``data:`` font faces)."""
    return (
        f"<!doctype html><html{copy_attributes(s.text)}><head><meta charset=\"utf-8\">"  # dir/lang of the copy
        f"<style>{font_css}</style>"
        "<style>html, body { margin: 0; padding: 0; "
        f"width: {width}px; height: {height}px; overflow: hidden; background: transparent !important; }}"
        "</style>"
        f"<style>{s.css}</style>"
        "<style>html, body { background: transparent !important; }</style>"
        f"</head><body>{s.body}</body></html>"
    )
