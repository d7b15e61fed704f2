"""The LLM's HTML is untrusted input: keep only what a static text layer needs.

``nh3`` (the Rust ``ammonia`` sanitiser, on the html5ever parser browsers agree with) keeps an
allowlist of text tags with ``class``, ``id``, ``lang``, ``dir`` and a sanitised ``style``;
``script``/``style``/``iframe``/``svg``/... go with their content, every other tag and attribute
goes too. CSS, from ``<style>`` blocks and ``style`` attributes, is parsed with ``tinycss2``:
only plain ``selector { declarations }`` rules survive (no at-rules: ``@import``, ``@font-face``,
``@media``...), and only declarations of allowlisted properties whose values are made of plain
tokens and allowlisted functions (colours, gradients, calc, transforms, filters): ``url()``,
``image-set()``, ``expression()`` and any other function, ``!important`` and any declaration
written with ``\\`` escapes are dropped. The document is then rebuilt from scratch by
``build_document``. The renderer adds its own walls (JavaScript off, all non-``data:`` requests
aborted).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import nh3
import tinycss2
from tinycss2 import ast

from pipeline.fonts import copy_attributes
from pipeline.messages import MAX_ANSWER_CHARS
from pipeline.worker.design.hyphenate import copy_language, hyphenate_html

ALLOWED_TAGS = frozenset(
    (
        "div span p h1 h2 h3 h4 h5 h6 br strong em b i u s small sup sub mark section header footer main "
        "article figure figcaption blockquote ul ol li"
    ).split()
)
DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript", "textarea",
     "select", "title", "frame", "frameset", "applet", "audio", "video", "canvas", "xmp", "noembed"}
)
ALLOWED_ATTRS = frozenset({"class", "id", "style", "lang", "dir"})
# Structure that build_document rebuilds itself: dropping it is not worth a note.
_UNNOTED_TAGS = frozenset({"html", "head", "body", "meta", "style"})

# What a text layer needs, and nothing that loads, moves or runs (no content, cursor, animation,
# mask, list-style-image, custom properties).
CSS_PROPERTIES = frozenset((
    "position top right bottom left inset z-index display box-sizing float clear visibility vertical-align "
    "width height min-width min-height max-width max-height aspect-ratio overflow overflow-x overflow-y margin "
    "margin-top margin-right margin-bottom margin-left margin-block margin-inline padding padding-top padding-"
    "right padding-bottom padding-left padding-block padding-inline flex flex-direction flex-wrap flex-flow "
    "flex-grow flex-shrink flex-basis order gap row-gap column-gap justify-content justify-items justify-self "
    "align-content align-items align-self place-content place-items place-self grid-template-columns grid-"
    "template-rows grid-column grid-row grid-auto-flow grid-auto-rows grid-auto-columns font font-family font-"
    "size font-weight font-style font-variant font-stretch font-kerning font-feature-settings font-variant-"
    "numeric line-height letter-spacing word-spacing text-align text-align-last text-indent text-transform "
    "text-shadow text-overflow text-wrap text-orientation text-rendering text-decoration text-decoration-line "
    "text-decoration-color text-decoration-style text-decoration-thickness text-underline-offset white-space "
    "word-break overflow-wrap word-wrap hyphens line-break writing-mode direction unicode-bidi -webkit-text-"
    "stroke -webkit-text-stroke-width -webkit-text-stroke-color -webkit-text-fill-color -webkit-background-clip "
    "paint-order color opacity background background-color background-image background-clip background-origin "
    "background-size background-position background-repeat mix-blend-mode isolation border border-top border-"
    "right border-bottom border-left border-width border-style border-color border-radius border-top-left-"
    "radius border-top-right-radius border-bottom-left-radius border-bottom-right-radius outline outline-width "
    "outline-style outline-color outline-offset box-shadow transform transform-origin filter backdrop-filter "
    "clip-path box-decoration-break -webkit-box-decoration-break list-style-type list-style-position"
).split())
CSS_FUNCTIONS = frozenset((
    "rgb rgba hsl hsla hwb lab lch oklab oklch color color-mix linear-gradient radial-gradient conic-gradient "
    "repeating-linear-gradient repeating-radial-gradient repeating-conic-gradient calc min max clamp translate "
    "translatex translatey translatez translate3d rotate rotatex rotatey rotatez rotate3d scale scalex scaley "
    "scalez scale3d skew skewx skewy matrix matrix3d perspective blur brightness contrast drop-shadow grayscale "
    "hue-rotate invert opacity saturate sepia polygon circle ellipse inset minmax repeat fit-content"
).split())
_VALUE_DELIMS = frozenset([",", "/", "+", "-", "*", "%"])
_SELECTOR_FUNCTIONS = frozenset(
    ["not", "is", "where", "has", "lang", "dir", "nth-child", "nth-last-child", "nth-of-type", "nth-last-of-type"]
)
_SELECTOR_DELIMS = frozenset([".", ",", ">", "+", "~", "*", ":", "|", "=", "^", "$", "-"])
_MAX_VALUE_CHARS = 1000
_MAX_NESTING = 16  # calc(calc(...)): deeper is refused before tinycss2's recursive serializer sees it
_MAX_SELECTOR_CHARS = 200

_NAME_RE = re.compile(r"^[A-Za-z0-9_\- ]{1,80}$")
_LANG_RE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)(?:</style\s*>|$)", re.S | re.I)


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


# ---- CSS (tinycss2) -------------------------------------------------------------------------
class _Source:
    """Offsets of tinycss2 nodes in the text they came from, to look at what was written (escapes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lines = [0] + [m.end() for m in re.finditer("\n", text)]

    def offset(self, node: ast.Node) -> int:
        return self._lines[node.source_line - 1] + node.source_column - 1

    def spans(self, nodes: Sequence[ast.Node], end: int) -> Iterable[tuple[ast.Node, str]]:
        """Each node with its raw text: from its start to the next node's (or ``end``)."""
        for i, node in enumerate(nodes):
            stop = self.offset(nodes[i + 1]) if i + 1 < len(nodes) else end
            yield node, self.text[self.offset(node):stop]


def _normalise(css: str) -> str:
    # tinycss2 counts lines after this same preprocessing (CSS Syntax 3.3); doing it first keeps
    # node positions and string offsets in step.
    return re.sub(r"\r\n?|\f", "\n", css).replace("\0", "\ufffd")


def _plain_string(token: ast.StringToken) -> bool:
    # A '<' could close the <style> element around the stylesheet ("</style>"); quotes and
    # backslashes are re-escaped by the serializer, newlines cannot occur in a string token.
    return "<" not in token.value


def _value_ok(tokens: Iterable[ast.Node], depth: int = 0) -> bool:
    if depth > _MAX_NESTING:
        return False
    for t in tokens:
        if isinstance(t, ast.WhitespaceToken | ast.IdentToken | ast.HashToken | ast.NumberToken
                      | ast.PercentageToken | ast.DimensionToken):
            continue
        if isinstance(t, ast.LiteralToken) and t.value in _VALUE_DELIMS:
            continue
        if isinstance(t, ast.StringToken) and _plain_string(t):
            continue
        if isinstance(t, ast.FunctionBlock) and t.lower_name in CSS_FUNCTIONS and _value_ok(t.arguments, depth + 1):
            continue
        if isinstance(t, ast.ParenthesesBlock) and _value_ok(t.content, depth + 1):
            continue
        return False  # url(), image-set(), expression(), @keywords, {} and [] blocks, unicode ranges...
    return True


def _declarations(source: _Source, nodes: Sequence[ast.Node], end: int, notes: set[str]) -> list[str]:
    kept = []
    for node, raw in source.spans(nodes, end):
        if not isinstance(node, ast.Declaration):
            if isinstance(node, ast.AtRule | ast.QualifiedRule):  # nested rules are not kept
                notes.add(f"css:@{node.lower_at_keyword[:40]}" if isinstance(node, ast.AtRule) else "css:nested rule")
            continue
        ok = node.lower_name in CSS_PROPERTIES and "\\" not in raw and _value_ok(node.value)
        value = tinycss2.serialize(node.value).strip() if ok else ""
        if not value or len(value) > _MAX_VALUE_CHARS or "<" in value or "\\" in value:  # last wall
            notes.add(f"css:{node.lower_name[:40]}")
            continue
        kept.append(f"{node.lower_name}: {value}")  # without !important: the canvas rules must win
    return kept


def sanitize_declarations(block: str, notes: set[str] | None = None) -> str:
    """A ``style`` attribute's (or a rule's) declarations, keeping only allowlisted properties whose
    values cannot fetch, execute or escape; what goes is added to ``notes``."""
    notes = set() if notes is None else notes
    source = _Source(_normalise(block))
    nodes = tinycss2.parse_blocks_contents(source.text, skip_comments=True, skip_whitespace=True)
    return "; ".join(_declarations(source, nodes, len(source.text), notes))


def _selector_ok(tokens: Iterable[ast.Node], depth: int = 0) -> bool:
    if depth > _MAX_NESTING:
        return False
    for t in tokens:
        if isinstance(t, ast.WhitespaceToken | ast.IdentToken | ast.HashToken | ast.NumberToken
                      | ast.DimensionToken):
            continue
        if isinstance(t, ast.LiteralToken) and t.value in _SELECTOR_DELIMS:
            continue
        if isinstance(t, ast.StringToken) and _plain_string(t):
            continue
        if isinstance(t, ast.SquareBracketsBlock) and _selector_ok(t.content, depth + 1):
            continue
        if (isinstance(t, ast.FunctionBlock) and t.lower_name in _SELECTOR_FUNCTIONS
                and _selector_ok(t.arguments, depth + 1)):
            continue
        return False
    return True


def sanitize_css(css: str, notes: set[str] | None = None) -> str:
    """Plain ``selector { declarations }`` rules only; at-rules and anything dangerous go."""
    notes = set() if notes is None else notes
    source = _Source(_normalise(css))
    rules = tinycss2.parse_stylesheet(source.text, skip_comments=True, skip_whitespace=True)
    out = []
    for rule, raw in source.spans(rules, len(source.text)):
        if isinstance(rule, ast.AtRule):
            notes.add(f"css:@{rule.lower_at_keyword[:40]}")
            continue
        if not isinstance(rule, ast.QualifiedRule):  # a parse error
            continue
        ok = "\\" not in raw.partition("{")[0] and _selector_ok(rule.prelude)
        selector = tinycss2.serialize(rule.prelude).strip() if ok else ""
        if not selector or len(selector) > _MAX_SELECTOR_CHARS or "\\" in selector:
            notes.add("css:selector")
            continue
        inner = tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
        end = source.offset(rule) + len(raw)
        decls = _declarations(source, inner, end, notes)
        if decls:
            out.append(f"{selector} {{ {'; '.join(decls)}; }}")
    return "\n".join(out)


# ---- HTML (nh3) -----------------------------------------------------------------------------
class _Inventory(HTMLParser):
    """Tags and attributes of the input, only to say in the job's notes what the sanitiser dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.removed: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            if tag not in _UNNOTED_TAGS:
                self.removed.add(tag)
            return
        self.removed.update(f"@{name}" for name, _ in attrs if name not in ALLOWED_ATTRS)


def _attribute_filter(notes: set[str]) -> Any:
    def keep(tag: str, name: str, value: str) -> str | None:
        if name == "style":
            return sanitize_declarations(value, notes) or None
        if name in ("class", "id"):
            return value if _NAME_RE.match(value) else None
        if name == "dir":
            return value.lower() if value.lower() in ("ltr", "rtl", "auto") else None
        if name == "lang":
            return value if _LANG_RE.match(value) else None
        return None  # nh3 drops every other attribute anyway

    return keep


_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags=set(DROP_WITH_CONTENT), attributes={})


def sanitize_html(answer: str) -> Sanitised:
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValueError(f"the LLM answer is too large ({len(answer)} characters)")
    markup = extract_html(answer)
    notes: set[str] = set()
    # <style> blocks feed the stylesheet (nh3 removes them from the body with their content);
    # whatever this pattern takes for CSS is parsed and allowlisted like any other CSS.
    css = sanitize_css("\n".join(_STYLE_BLOCK.findall(markup)), notes)
    cleaner = nh3.Cleaner(
        tags=set(ALLOWED_TAGS), clean_content_tags=set(DROP_WITH_CONTENT), attributes={"*": set(ALLOWED_ATTRS)},
        attribute_filter=_attribute_filter(notes), strip_comments=True, link_rel=None,
    )
    body = cleaner.clean(markup)
    # Visible text from the clean body: in nh3's output every '<' starts a tag (text has &lt;),
    # so a space before each tag keeps words of adjacent blocks apart.
    text = " ".join(html.unescape(_TEXT_ONLY.clean(body.replace("<", " <"))).split())
    inventory = _Inventory()
    inventory.feed(markup)
    inventory.close()
    return Sanitised(css=css, body=body, text=text, removed=tuple(sorted(inventory.removed | notes)))


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
        f"</head><body>{hyphenate_html(s.body, copy_language(s.text))}</body></html>"  # soft hyphens: see hyphenate
    )
