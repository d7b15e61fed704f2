"""Font discovery: the bundled fonts/ folder plus whatever fontconfig knows on the system.

The renderer sees exactly the same set (it runs Chromium with the same fontconfig file),
so a font that list_fonts reports is a font the text layer can use.

Coverage is judged on real outlines, not on the cmap: the bundled NanumSquare fonts map
thousands of CJK ideographs (and U+30FC) to glyphs with no contours, and Chromium takes the
first font in the stack whose cmap has a character, blank or not. So a character counts as
drawn by a font only if its glyph has ink (``Face.draws``); the copy's scripts pick fallback
fonts that really draw them (``FontCatalog.font_stack``), and the bundled fonts are embedded
with a ``unicode-range`` of what they really draw (``pipeline.worker.design.fontembed``), so
Chromium falls through to the next family for the rest.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
import subprocess
import tempfile
import threading
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pipeline.cssvalues import GENERIC_FAMILIES, parse_font_family
from pipeline.schemas import FontInfo


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
_WEIGHTS = {0: 100, 40: 200, 50: 300, 55: 350, 75: 400, 80: 400, 100: 500, 180: 600, 200: 700, 205: 800, 210: 900, 215: 950}


def _css_weight(fc_weight: str) -> int:
    try:
        w = int(float(fc_weight))
    except ValueError:
        return 400
    return _WEIGHTS.get(w, min(_WEIGHTS.values(), key=lambda v: abs(v - w * 4)))


def _fc(conf: Path, args: list[str]) -> list[str]:
    env = dict(os.environ, FONTCONFIG_FILE=str(conf))
    try:
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines()


def _fc_list(conf: Path, pattern: str, fmt: str) -> list[str]:
    return _fc(conf, ["fc-list", pattern, "--format", fmt])


def font_id(family: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")


# ---- which characters need ink ------------------------------------------------------------
_NO_INK_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})


def is_visible(ch: str) -> bool:
    """Whether a character must leave ink: not a space, control, joiner or variation selector
    (combining marks count: a font that maps one to an empty glyph drops it)."""
    cp = ord(ch)
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or cp == 0x034F:
        return False
    return unicodedata.category(ch) not in _NO_INK_CATEGORIES


# ---- outlines, read straight from the font file -------------------------------------------
# Type 2 charstring operators that draw (lines, curves, flex) or may draw (subroutine calls).
_T2_DRAW = frozenset({5, 6, 7, 8, 10, 24, 25, 26, 27, 29, 30, 31})
_T2_STEMS = frozenset({1, 3, 18, 23})


def _t2_draws(cs: bytes) -> bool:
    """Whether a Type 2 charstring has a path (an empty glyph is just ``[width] endchar``)."""
    i, n, stack, stems = 0, len(cs), 0, 0
    while i < n:
        b = cs[i]
        if b >= 32 or b == 28:
            i += 1 if b <= 246 else 2 if b <= 254 else 5
            i += 2 if b == 28 else 0
            stack += 1
            continue
        i += 1
        if b == 12:  # two-byte operators: flex draws, the rest are arithmetic
            if i < n and cs[i] in (34, 35, 36, 37):
                return True
            i += 1
            stack = 0
        elif b in _T2_DRAW:
            return True
        elif b in _T2_STEMS:
            stems += stack // 2
            stack = 0
        elif b in (19, 20):  # hintmask/cntrmask: pending args are an implicit vstem, then mask bytes
            stems += stack // 2
            i += (stems + 7) // 8
            stack = 0
        elif b == 14:  # endchar; 4 arguments (5 with a width) = seac, an accented composite
            return stack >= 4
        else:
            stack = 0
    return False


def _cff_dict_charstrings(d: bytes) -> int | None:
    """The CharStrings offset (operator 17) of a CFF Top DICT."""
    i, operands = 0, list[float]()
    while i < len(d):
        b = d[i]
        if b <= 21:
            op = (1200 + d[i + 1]) if b == 12 else b
            i += 2 if b == 12 else 1
            if op == 17 and operands:
                return int(operands[-1])
            operands = []
        elif b == 28:
            operands.append(struct.unpack_from(">h", d, i + 1)[0]); i += 3
        elif b == 29:
            operands.append(struct.unpack_from(">i", d, i + 1)[0]); i += 5
        elif b == 30:  # real number: skip nibbles up to the 0xf terminator
            i += 1
            while i < len(d) and (d[i] & 0x0F) != 0x0F and (d[i] >> 4) != 0x0F:
                i += 1
            i += 1
            operands.append(0)
        elif 32 <= b <= 246:
            operands.append(b - 139); i += 1
        elif 247 <= b <= 250:
            operands.append((b - 247) * 256 + d[i + 1] + 108); i += 2
        elif 251 <= b <= 254:
            operands.append(-(b - 251) * 256 - d[i + 1] - 108); i += 2
        else:
            i += 1
    return None


class _Index:
    """A CFF INDEX: count, then the byte range of entry ``k``."""

    def __init__(self, buf: mmap.mmap | bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.count = struct.unpack_from(">H", buf, pos)[0]
        self.off_size = buf[pos + 2] if self.count else 0
        self.data = pos + 3 + (self.count + 1) * self.off_size - 1  # offsets are 1-based

    def _off(self, k: int) -> int:
        p = self.pos + 3 + k * self.off_size
        return int.from_bytes(self.buf[p:p + self.off_size], "big")

    def item(self, k: int) -> tuple[int, int]:
        return self.data + self._off(k), self.data + self._off(k + 1)

    def end(self) -> int:
        return self.pos + 2 if not self.count else self.data + self._off(self.count)


class Face:
    """One face of a font file (a ``.ttc`` holds several), read lazily through mmap: the cmap and
    the outline of a glyph are looked up per character, never the whole font, so checking a few
    characters of a 20 MB CJK collection takes microseconds."""

    def __init__(self, path: str, index: int = 0) -> None:
        self.path, self.index = path, index
        self._draws: dict[str, bool | None] = {}
        self._lock = threading.Lock()
        self._fallback = None  # a fontTools reader for what the raw reader does not handle
        with open(path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        b = self.buf
        base = 0
        if b[:4] == b"ttcf":
            base = struct.unpack_from(">I", b, 12 + 4 * index)[0]
        num = struct.unpack_from(">H", b, base + 4)[0]
        self.tables: dict[bytes, tuple[int, int]] = {}
        for k in range(num):
            tag, _, off, length = struct.unpack_from(">4sIII", b, base + 12 + 16 * k)
            self.tables[tag] = (off, length)
        self._cmap = self._pick_cmap()
        if b"glyf" in self.tables and b"loca" in self.tables and b"head" in self.tables:
            self.kind = "glyf"
            self._long_loca = struct.unpack_from(">h", b, self.tables[b"head"][0] + 50)[0] == 1
        elif b"CFF " in self.tables:
            self.kind = "cff"
            cff = self.tables[b"CFF "][0]
            names = _Index(b, cff + b[cff + 2])
            top = _Index(b, names.end())
            start, end = top.item(0)
            off = _cff_dict_charstrings(bytes(b[start:end]))
            if off is None:
                raise ValueError("CFF without CharStrings")
            self._charstrings = _Index(b, cff + off)
        elif b"CFF2" in self.tables:
            self.kind = "fonttools"
        else:
            self.kind = "bitmap"  # CBDT/sbix colour bitmaps: a mapped glyph is a drawn glyph

    # -- cmap ----------------------------------------------------------------------------
    def _pick_cmap(self) -> tuple[int, int] | None:
        """(offset, format) of the subtable HarfBuzz would use: full Unicode first, then BMP."""
        if b"cmap" not in self.tables:
            return None
        b, cmap = self.buf, self.tables[b"cmap"][0]
        found: dict[tuple[int, int], tuple[int, int]] = {}
        for k in range(struct.unpack_from(">H", b, cmap + 2)[0]):
            pid, eid, off = struct.unpack_from(">HHI", b, cmap + 4 + 8 * k)
            fmt = struct.unpack_from(">H", b, cmap + off)[0]
            found[(pid, eid)] = (cmap + off, fmt)
        for key in ((3, 10), (0, 6), (0, 4), (3, 1), (0, 3), (0, 2), (0, 1), (0, 0)):
            if key in found and found[key][1] in (4, 12):
                return found[key]
        return None

    def glyph_id(self, cp: int) -> int:
        """The glyph for a code point, 0 (.notdef) when the cmap has none."""
        if self._cmap is None:
            return 0
        b, (pos, fmt) = self.buf, self._cmap
        if fmt == 12:
            n = struct.unpack_from(">I", b, pos + 12)[0]
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                start, end, gid = struct.unpack_from(">III", b, pos + 16 + 12 * mid)
                if cp < start:
                    hi = mid
                elif cp > end:
                    lo = mid + 1
                else:
                    return gid + cp - start
            return 0
        if cp > 0xFFFF:
            return 0
        seg2 = struct.unpack_from(">H", b, pos + 6)[0]
        ends, starts = pos + 14, pos + 16 + seg2
        lo, hi = 0, seg2 // 2
        while lo < hi:  # first segment whose end >= cp
            mid = (lo + hi) // 2
            if struct.unpack_from(">H", b, ends + 2 * mid)[0] < cp:
                lo = mid + 1
            else:
                hi = mid
        if lo >= seg2 // 2:
            return 0
        start = struct.unpack_from(">H", b, starts + 2 * lo)[0]
        if cp < start:
            return 0
        delta = struct.unpack_from(">h", b, starts + seg2 + 2 * lo)[0]
        ro_pos = starts + 2 * seg2 + 2 * lo
        ro = struct.unpack_from(">H", b, ro_pos)[0]
        if ro == 0:
            return (cp + delta) & 0xFFFF
        g = struct.unpack_from(">H", b, ro_pos + ro + 2 * (cp - start))[0]
        return (g + delta) & 0xFFFF if g else 0

    # -- outlines ------------------------------------------------------------------------
    def _glyph_has_ink(self, gid: int) -> bool:
        b = self.buf
        if self.kind == "glyf":
            loca = self.tables[b"loca"][0]
            if self._long_loca:
                a, z = struct.unpack_from(">II", b, loca + 4 * gid)
            else:
                a, z = (2 * v for v in struct.unpack_from(">HH", b, loca + 2 * gid))
            if z <= a:
                return self._colr_layers(gid)
            return struct.unpack_from(">h", b, self.tables[b"glyf"][0] + a)[0] != 0 or self._colr_layers(gid)
        if self.kind == "cff":
            start, end = self._charstrings.item(gid)
            return _t2_draws(bytes(b[start:end])) or self._colr_layers(gid)
        if self.kind == "bitmap":
            return True
        return self._fonttools_ink(gid)

    def _tt(self):
        if self._fallback is None:
            from fontTools.ttLib import TTFont

            self._fallback = TTFont(self.path, fontNumber=self.index, lazy=True)
        return self._fallback

    def _colr_layers(self, gid: int) -> bool:
        """Colour fonts may draw a glyph whose own outline is empty through COLR layers."""
        if b"COLR" not in self.tables:
            return False
        colr = self._tt()["COLR"]
        name = self._tt().getGlyphName(gid)
        if colr.version == 0:
            return name in colr.ColorLayers
        records = colr.table.BaseGlyphRecordArray.BaseGlyphRecord if colr.table.BaseGlyphRecordArray else []
        paints = colr.table.BaseGlyphList.BaseGlyphPaintRecord if colr.table.BaseGlyphList else []
        return any(r.BaseGlyph == name for r in [*records, *paints])

    def _fonttools_ink(self, gid: int) -> bool:
        from fontTools.pens.boundsPen import ControlBoundsPen

        font = self._tt()
        glyphs = font.getGlyphSet()
        pen = ControlBoundsPen(glyphs)
        glyphs[font.getGlyphName(gid)].draw(pen)
        return pen.bounds is not None or self._colr_layers(gid)

    def draws(self, ch: str) -> bool | None:
        """None: the cmap has no glyph for ``ch``; True: it has one with ink (or ``ch`` needs none);
        False: it maps ``ch`` to an empty glyph, a blank where a letter should be."""
        if ch in self._draws:
            return self._draws[ch]
        with self._lock:
            try:
                gid = self.glyph_id(ord(ch))
                result = None if gid == 0 else (True if not is_visible(ch) else self._glyph_has_ink(gid))
            except (struct.error, IndexError, ValueError, KeyError, AttributeError):
                result = None  # a damaged table: treat the character as not covered
            self._draws[ch] = result
        return result


@lru_cache(maxsize=1024)
def _face_at(path: str, index: int, mtime_ns: int) -> Face | None:
    try:
        return Face(path, index)
    except (OSError, ValueError, struct.error, IndexError):
        return None


def face(path: str, index: int = 0) -> Face | None:
    """A cached reader for one face of a font file (None if it cannot be read)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _face_at(path, index, mtime)


def drawn_chars(path: str, chars: str, index: int = 0) -> str:
    """The characters of ``chars`` that the face really draws (or maps, for spaces and joiners)."""
    f = face(path, index)
    return "".join(c for c in dict.fromkeys(chars) if f is not None and f.draws(c))


# ---- scripts ------------------------------------------------------------------------------
SCRIPTS = ("latin", "cyrillic", "greek", "hangul", "japanese", "chinese-simplified", "chinese-traditional",
           "arabic", "hebrew", "thai", "devanagari", "emoji")
CJK_SCRIPTS = frozenset({"hangul", "japanese", "chinese-simplified", "chinese-traditional"})
RTL_SCRIPTS = frozenset({"arabic", "hebrew"})

# (first, last, script); "han" and "kana" are resolved per text (Japanese, Chinese or Korean Hanja).
_RANGES = sorted([
    (0x0370, 0x03FF, "greek"), (0x1F00, 0x1FFF, "greek"),
    (0x0400, 0x052F, "cyrillic"), (0x1C80, 0x1C8F, "cyrillic"), (0x2DE0, 0x2DFF, "cyrillic"), (0xA640, 0xA69F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"), (0xFB1D, 0xFB4F, "hebrew"),
    (0x0600, 0x06FF, "arabic"), (0x0750, 0x077F, "arabic"), (0x0870, 0x08FF, "arabic"), (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0x0900, 0x097F, "devanagari"), (0xA8E0, 0xA8FF, "devanagari"),
    (0x0E00, 0x0E7F, "thai"),
    (0x1100, 0x11FF, "hangul"), (0x3130, 0x318F, "hangul"), (0xA960, 0xA97F, "hangul"), (0xAC00, 0xD7FF, "hangul"),
    (0xFFA0, 0xFFDC, "hangul"),
    (0x3040, 0x30FF, "kana"), (0x31F0, 0x31FF, "kana"), (0x32D0, 0x32FE, "kana"), (0x3300, 0x3357, "kana"),
    (0xFF66, 0xFF9F, "kana"), (0x1B000, 0x1B16F, "kana"),
    (0x2E80, 0x2FDF, "han"), (0x3005, 0x3007, "han"), (0x3021, 0x3029, "han"), (0x3038, 0x303B, "han"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xF900, 0xFAFF, "han"), (0x20000, 0x3134F, "han"),
    (0x2600, 0x27BF, "emoji"), (0x1F000, 0x1FAFF, "emoji"),
])
_RANGE_STARTS = [r[0] for r in _RANGES]

# Common characters written differently in the two Chinese standards (simplified, traditional),
# enough to tell a line of copy apart; Han text with neither defaults to simplified.
_SIMP_TRAD = (  # pairs (simplified, traditional); none whose simplified form is also a traditional word
    "这這 个個 们們 来來 时時 说說 国國 对對 会會 发發 经經 过過 还還 从從 见見 门門 间間 问問 车車 东東 业業 长長"
    " 马馬 乐樂 书書 为為 万萬 与與 专專 两兩 严嚴 义義 习習 买買 卖賣 乱亂 争爭 产產 亲親 价價 众眾 优優 传傳"
    " 伤傷 体體 养養 兴興 关關 双雙 场場 刚剛 创創 别別 动動 务務 劳勞 区區 医醫 华華 单單 厂廠 历歷 压壓 县縣"
    " 变變 号號 吗嗎 员員 听聽 团團 园園 围圍 图圖 圆圓 坏壞 块塊 声聲 处處 备備 够夠 头頭 夺奪 奋奮 妇婦 学學"
    " 宝寶 实實 宽寬 导導 层層 岁歲 币幣 师師 带帶 帮幫 广廣 应應 开開 张張 强強 归歸 录錄 总總 恋戀 惊驚 惯慣"
    " 战戰 户戶 扩擴 护護 报報 担擔 择擇 挂掛 换換 据據 无無 旧舊 显顯 机機 杂雜 权權 条條 极極 构構 标標 样樣"
    " 树樹 检檢 欢歡 气氣 汉漢 没沒 洁潔 浓濃 测測 温溫 满滿 灯燈 点點 热熱 爱愛 状狀 独獨 现現 电電 画畫 疗療"
    " 皱皺 盘盤 码碼 礼禮 种種 积積 称稱 笔筆 简簡 类類 红紅 级級 纯純 纸紙 线線 练練 组組 细細 织織 终終 结結"
    " 给給 绝絕 统統 继繼 绿綠 网網 罗羅 节節 荐薦 获獲 营營 药藥 虽雖 衬襯 装裝 补補 视視 览覽 觉覺 订訂 认認"
    " 让讓 议議 记記 讲講 许許 设設 证證 评評 识識 诚誠 询詢 语語 请請 读讀 谁誰 调調 贝貝 货貨 质質 购購 贵貴"
    " 费費 贴貼 贺賀 资資 赛賽 赠贈 赶趕 跃躍 轻輕 载載 边邊 达達 运運 进進 连連 选選 递遞 邮郵 钟鐘 钱錢 铁鐵"
    " 银銀 错錯 锅鍋 镜鏡 闪閃 闭閉 阅閱 陆陸 队隊 阳陽 际際 随隨 隐隱 难難 页頁 顶頂 项項 须須 顾顧 预預 领領"
    " 频頻 题題 颜顏 风風 飞飛 饭飯 饮飲 馆館 鱼魚 鸡雞 鲜鮮 齐齊 龙龍 减減 抢搶 尝嘗 肤膚 净淨"
)
_SIMPLIFIED_ONLY = frozenset(p[0] for p in _SIMP_TRAD.split())
_TRADITIONAL_ONLY = frozenset(p[1] for p in _SIMP_TRAD.split())

SCRIPT_LANG = {
    "latin": "en", "cyrillic": "ru", "greek": "el", "hangul": "ko", "japanese": "ja", "chinese-simplified": "zh-Hans",
    "chinese-traditional": "zh-Hant", "arabic": "ar", "hebrew": "he", "thai": "th", "devanagari": "hi",
}
# fontconfig's language tags for the same scripts (for its sorted fallback lists)
_FC_LANG = {**SCRIPT_LANG, "chinese-simplified": "zh-cn", "chinese-traditional": "zh-tw", "emoji": "und-zsye"}

# Characters a font must draw to count as covering a script (list_fonts, fallback choice).
SCRIPT_SAMPLES = {
    "latin": "AaZz", "cyrillic": "БбЖжЯя", "greek": "ΑαΩω", "hangul": "가나한글", "japanese": "あアの日本語",
    "chinese-simplified": "这个们国说", "chinese-traditional": "這個們國說", "arabic": "ابتعم", "hebrew": "אבגשת",
    "thai": "กขคมไ", "devanagari": "कखगमि", "emoji": "😀🎉",
}

# Preferred fallback families per script, best first (Debian package names in install-system.sh).
SCRIPT_FONTS = {
    "japanese": ("Noto Sans CJK JP", "Noto Sans JP", "Source Han Sans JP", "IPAexGothic", "IPAGothic", "TakaoGothic",
                 "VL Gothic"),
    "chinese-simplified": ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                           "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "AR PL UMing CN"),
    "chinese-traditional": ("Noto Sans CJK TC", "Noto Sans TC", "Noto Sans CJK HK", "Source Han Sans TC",
                            "Source Han Sans TW", "AR PL UMing TW"),
    "hangul": ("Noto Sans CJK KR", "Noto Sans KR", "Source Han Sans KR", "NanumGothic", "UnDotum"),
    "arabic": ("Noto Sans Arabic", "Noto Naskh Arabic", "Noto Sans Arabic UI", "Noto Kufi Arabic", "Amiri",
               "KacstOne", "DejaVu Sans"),
    "hebrew": ("Noto Sans Hebrew", "Noto Serif Hebrew", "Noto Rashi Hebrew", "DejaVu Sans"),
    "thai": ("Noto Sans Thai", "Noto Sans Thai UI", "Noto Sans Thai Looped", "Noto Looped Thai", "Loma", "Garuda",
             "Waree"),
    "devanagari": ("Noto Sans Devanagari", "Noto Sans Devanagari UI", "Lohit Devanagari", "Gargi"),
    "latin": ("Noto Sans", "DejaVu Sans", "Liberation Sans"),
    "cyrillic": ("Noto Sans", "DejaVu Sans", "Liberation Sans"),
    "greek": ("Noto Sans", "DejaVu Sans", "Liberation Sans"),
    "emoji": ("Noto Color Emoji", "Twemoji", "Symbola"),
}


def _raw_script(ch: str) -> str | None:
    cp = ord(ch)
    k = bisect_right(_RANGE_STARTS, cp) - 1
    if k >= 0 and cp <= _RANGES[k][1]:
        return _RANGES[k][2]
    if cp < 0x2500 and ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
        return "latin"
    return None


def _han_owner(text: str, raw: list[str | None]) -> str:
    """Whose Han characters these are: Japanese with kana around, Korean Hanja among Hangul,
    else Chinese, traditional when its telltale characters outnumber the simplified ones."""
    if "kana" in raw:
        return "japanese"
    if "hangul" in raw:
        return "hangul"
    trad = sum(c in _TRADITIONAL_ONLY for c in text)
    simp = sum(c in _SIMPLIFIED_ONLY for c in text)
    return "chinese-traditional" if trad > simp else "chinese-simplified"


def char_scripts(text: str) -> list[str | None]:
    """The script of each character of ``text`` (None for digits, punctuation, spaces...)."""
    raw = [_raw_script(c) for c in text]
    owner = _han_owner(text, raw) if "han" in raw else ""
    return [owner if s == "han" else "japanese" if s == "kana" else s for s in raw]


def detect_scripts(text: str) -> list[str]:
    """Scripts of the copy in order of first appearance, except that the script owning its Han
    characters comes first among the CJK ones (all CJK fonts carry kana and Hangul, but a Han
    character takes the regional shape of the first CJK font that has it)."""
    scripts = [s for s in dict.fromkeys(char_scripts(text)) if s]
    raw = {_raw_script(c) for c in text}
    if "han" in raw:
        owner = _han_owner(text, [*raw])
        first_cjk = next(i for i, s in enumerate(scripts) if s in CJK_SCRIPTS)
        scripts.remove(owner)
        scripts.insert(first_cjk, owner)
    return scripts


def _cjk_punctuation(ch: str) -> bool:
    return 0x3000 <= ord(ch) <= 0x303F or 0xFF01 <= ord(ch) <= 0xFF60


def embeddable_chars(path: str, text: str, index: int = 0) -> str:
    """What a bundled face should draw of the copy (and its upper/lower case): the characters it
    really draws, less every script of the copy it draws only part of, so one line of Japanese
    is not half NanumSquare kana, half Noto kanji (CJK punctuation goes with its script). The
    embedded face's ``unicode-range`` is exactly this; the rest falls to the next family."""
    chars = "".join(dict.fromkeys(text + text.upper() + text.lower() + " "))
    drawn = set(drawn_chars(path, chars, index))
    scripts = dict(zip(chars, char_scripts(chars)))
    # Judged on the copy itself; its case variants are only a bonus where the face has them.
    partial = {scripts[c] for c in text if scripts[c] and is_visible(c) and c not in drawn}
    if partial & CJK_SCRIPTS:
        partial.add("cjk-punctuation")
    return "".join(
        c for c in chars
        if c in drawn and ("cjk-punctuation" if _cjk_punctuation(c) else scripts[c]) not in partial
    )


def text_direction(text: str) -> str:
    """'rtl' or 'ltr' from the first strong character (Unicode bidi classes R/AL vs L)."""
    for ch in text:
        bidi = unicodedata.bidirectional(ch)
        if bidi in ("R", "AL"):
            return "rtl"
        if bidi == "L":
            return "ltr"
    return "ltr"


def text_lang(text: str) -> str | None:
    """A BCP 47 tag for the copy's main script (its first non-Latin one), for ``lang=`` (line
    breaking, CJK glyph shapes, and the locale Chromium hands fontconfig for its fallback)."""
    # Latin, Cyrillic and Greek name no language (French? Russian or Bulgarian?): no tag for them.
    scripts = [s for s in detect_scripts(text) if s not in ("emoji", "latin", "cyrillic", "greek")]
    return SCRIPT_LANG[scripts[0]] if scripts else None


def copy_attributes(text: str) -> str:
    """The HTML attributes for the element holding the copy: ``dir`` always, ``lang`` when known."""
    lang = text_lang(text)
    return f' dir="{text_direction(text)}"' + (f' lang="{lang}"' if lang else "")


# ---- the catalogue ------------------------------------------------------------------------
T = TypeVar("T")


def _dedupe(names: list[str]) -> list[str]:
    """First occurrence of each family, case-insensitively."""
    seen: set[str] = set()
    out = []
    for n in names:
        if n.lower() not in seen:
            seen.add(n.lower())
            out.append(n)
    return out


class FontCatalog:
    def __init__(self, fonts_dir: Path) -> None:
        self.fonts_dir = fonts_dir.resolve()
        self._cache: dict[object, object] = {}
        self._lock = threading.Lock()

    def _cached(self, key: object, make: Callable[[], T]) -> T:
        """A memo over this catalogue's fontconfig state (first computation wins under threads)."""
        if key not in self._cache:
            value = make()
            with self._lock:
                self._cache.setdefault(key, value)
        return self._cache[key]  # type: ignore[return-value]

    @property
    def conf(self) -> Path:
        return fontconfig_file(self.fonts_dir)

    def _entries(self) -> tuple[tuple[str, str, str, str, int], ...]:
        """(family, style, fontconfig weight, file, face index) for every font: one fc-list scan."""
        def scan() -> tuple[tuple[str, str, str, str, int], ...]:
            rows = []
            for line in _fc_list(self.conf, ":", "%{family[0]}|%{style[0]}|%{weight}|%{file}|%{index}\n"):
                parts = line.split("|")
                if len(parts) == 5 and parts[0] and parts[3]:
                    idx = int(parts[4]) if parts[4].isdigit() else 0
                    rows.append((parts[0], parts[1], parts[2], parts[3], idx))
            # Stable, regular faces first: the face a family's coverage is judged on comes first.
            rows.sort(key=lambda r: (r[0].lower(), r[1].lower() not in ("regular", "book", "normal"), r[3], r[4]))
            return tuple(rows)
        return self._cached("entries", scan)

    def files(self) -> dict[str, tuple[str, ...]]:
        """Family -> font files (kept server-side: list_fonts never shows paths)."""
        return {fam: tuple(dict.fromkeys(p for p, _ in faces)) for fam, faces in self.faces().items()}

    def faces(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Family -> (file, face index) of each of its faces."""
        def build() -> dict[str, tuple[tuple[str, int], ...]]:
            out: dict[str, list[tuple[str, int]]] = {}
            for family, _, _, file, idx in self._entries():
                out.setdefault(family, []).append((file, idx))
            return {k: tuple(v) for k, v in out.items()}
        return self._cached("faces", build)

    def _family_key(self) -> dict[str, str]:
        return self._cached("keys", lambda: {k.lower(): k for k in self.faces()})

    def is_bundled(self, family: str) -> bool:
        return any(Path(p).resolve().parent == self.fonts_dir for p, _ in self.faces().get(family, ()))

    def family_draws(self, family: str, ch: str) -> bool | None:
        """Like ``Face.draws`` for the first face of ``family`` whose cmap has ``ch``."""
        for path, idx in self.faces().get(family, ()):
            f = face(path, idx)
            if f is not None and (d := f.draws(ch)) is not None:
                return d
        return None

    def covers(self, family: str, chars: str) -> bool:
        return all(self.family_draws(family, c) for c in chars)

    # -- fallback choice --------------------------------------------------------------------
    def _generic(self, name: str, lang: str | None) -> str | None:
        """The family fontconfig gives Chromium for a generic name (sans-serif...)."""
        pattern = name if not lang else f"{name}:lang={lang}"
        def match() -> str | None:
            out = _fc(self.conf, ["fc-match", "--format", "%{family[0]}", pattern])
            return out[0] if out else None
        return self._cached(("generic", pattern), match)

    def _fc_sorted(self, chars: str, lang: str | None) -> list[tuple[str, int]]:
        """Faces in fontconfig's fallback order for these characters (what Chromium asks it)."""
        pattern = ":charset=" + " ".join(f"{ord(c):x}" for c in chars) + (f":lang={lang}" if lang else "")
        def sort() -> list[tuple[str, int]]:
            out = []
            for line in _fc(self.conf, ["fc-match", "-s", "--format", "%{file}|%{index}\n", pattern]):
                path, _, idx = line.partition("|")
                out.append((path, int(idx) if idx.isdigit() else 0))
            return out
        return self._cached(("sorted", pattern), sort)

    def script_font(self, script: str) -> str | None:
        """An installed family that really draws ``script``: the preferred one if installed, else
        the first in fontconfig's own order for that script's language and characters."""
        def choose() -> str | None:
            sample = SCRIPT_SAMPLES[script]
            keys = self._family_key()
            for name in SCRIPT_FONTS.get(script, ()):
                family = keys.get(name.lower())
                if family and self.covers(family, sample):
                    return family
            for path, idx in self._fc_sorted(sample, _FC_LANG.get(script)):
                f = face(path, idx)
                if f is not None and all(f.draws(c) for c in sample):
                    fam = next((fam for fam, fs in self.faces().items() if (path, idx) in fs), None)
                    if fam and not self.is_bundled(fam):  # bundled ones are embedded, by the copy's family only
                        return fam
            return None
        return self._cached(("script", script), choose)

    def font_stack(self, families: list[str], text: str) -> list[str]:
        """The font-family list to emit for ``text``: the requested families, then for each script
        of the copy a font that really draws it (the right CJK region first), then emoji, then the
        requested generic families (``sans-serif`` if none). Latin, Cyrillic and Greek get a font
        only when the requested families leave some of their characters undrawn."""
        named = [f for f in families if f.lower() not in GENERIC_FAMILIES]
        generics = [f.lower() for f in families if f.lower() in GENERIC_FAMILIES and f.lower() != "emoji"]
        out = list(named)
        by_script: dict[str, list[str]] = {}
        for ch, s in zip(text, char_scripts(text)):
            if s:
                by_script.setdefault(s, []).append(ch)
        for script in [*detect_scripts(text), "emoji"]:
            if script in ("latin", "cyrillic", "greek") and all(
                any(self.family_draws(self._family_key().get(n.lower(), n), c) for n in named)
                for c in by_script.get(script, [])
            ):
                continue
            if (family := self.script_font(script)) is not None:
                out.append(family)
        out += generics or ["sans-serif"]
        return _dedupe(out)

    def missing_glyphs(self, text: str, families: list[str] | None = None) -> list[str]:
        """Characters of ``text`` that no font draws, following what Chromium does with the stack
        the worker emits (``font_stack``): per character, the first family whose cmap has it wins,
        blank or not, except the requested bundled families, which are embedded with a
        ``unicode-range`` of the characters they really draw; then fontconfig's fallback order.
        Spaces, joiners and variation selectors need no ink and are skipped."""
        families = list(families or [])
        lang = text_lang(text)
        keys = self._family_key()
        stack: list[tuple[str, str | None]] = []  # (family, what its embedded faces draw, None if not embedded)
        for name in self.font_stack(families, text):
            family = self._generic(name, lang) if name.lower() in GENERIC_FAMILIES else keys.get(name.lower())
            if family:
                embedded = family in {keys.get(f.lower()) for f in families} and self.is_bundled(family)
                ranges = "".join(embeddable_chars(p, text, i) for p, i in self.faces()[family]) if embedded else None
                stack.append((family, ranges))
        missing = []
        for ch in dict.fromkeys(c for c in text if is_visible(c)):
            verdict: bool | None = None
            for family, ranges in stack:
                d = (True if ch in ranges else None) if ranges is not None else self.family_draws(family, ch)
                if d is not None:
                    verdict = d
                    break
            if verdict is None:
                for path, idx in self._fc_sorted(ch, lang):
                    f = face(path, idx)
                    if f is not None and (d := f.draws(ch)) is not None:
                        verdict = d
                        break
            if not verdict:
                missing.append(ch)
        return sorted(missing)

    def scripts_of(self, family: str) -> list[str]:
        """Scripts the family draws, judged on outlines of a few characters of each."""
        return [s for s in SCRIPTS if self.covers(family, SCRIPT_SAMPLES[s])]

    def fonts(self) -> tuple[FontInfo, ...]:
        def build() -> tuple[FontInfo, ...]:
            hangul_files = set(_fc_list(self.conf, ":charset=ac00-d7a3", "%{file}\n"))
            families: dict[str, dict] = {}
            for family, style, weight, file, _ in self._entries():
                entry = families.setdefault(family, {"styles": set(), "weights": set(), "hangul": False,
                                                     "bundled": False})
                entry["styles"].add(style)
                entry["weights"].add(_css_weight(weight))
                entry["hangul"] |= file in hangul_files
                entry["bundled"] |= Path(file).resolve().parent == self.fonts_dir
            return tuple(
                FontInfo(
                    id=font_id(fam), family=fam, styles=sorted(e["styles"]), weights=sorted(e["weights"]),
                    hangul=e["hangul"], scripts=self.scripts_of(fam), bundled=e["bundled"],
                )
                for fam, e in sorted(families.items(), key=lambda kv: (not kv[1]["bundled"], kv[0].lower()))
            )
        return self._cached("fonts", build)

    def resolve(self, name: str) -> str | None:
        """Family name for a family or id (case-insensitive), or None if unknown."""
        key = name.strip().lower()
        keys = self._family_key()
        if key in keys:
            return keys[key]
        return next((fam for fam in keys.values() if font_id(fam) == key), None)

    def check_family_list(self, value: str) -> str:
        """Validate a CSS font-family list against known fonts; returns it normalised to families."""
        names = parse_font_family(value)
        out: list[str] = []
        for n in names:
            if n.lower() in GENERIC_FAMILIES:
                out.append(n.lower())
                continue
            family = self.resolve(n)
            if family is None:
                known = ", ".join(sorted(f for f in self.faces() if self.is_bundled(f))) or "none bundled"
                raise ValueError(f"unknown font {n!r}: call list_fonts (bundled: {known}) or use a generic family")
            out.append(family)
        return ", ".join(out)


_SHARED: dict[Path, FontCatalog] = {}


def shared_catalog(fonts_dir: Path | None = None) -> FontCatalog:
    """One catalogue per fonts folder for the process (the worker's stack choice uses it)."""
    if fonts_dir is None:
        from pipeline.config import BUNDLED_FONTS_DIR

        fonts_dir = BUNDLED_FONTS_DIR
    key = fonts_dir.resolve()
    if key not in _SHARED:
        _SHARED[key] = FontCatalog(key)
    return _SHARED[key]
