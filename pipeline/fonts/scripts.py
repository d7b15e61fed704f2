"""Which scripts a piece of copy is written in, and what that means for fonts and markup.

One job: script detection. ``char_scripts``/``detect_scripts`` classify characters (Han text
goes to Japanese, Korean or simplified/traditional Chinese by its neighbours and telltale
characters); ``text_direction``, ``text_lang`` and ``copy_attributes`` give the copy's
``dir``/``lang``; ``embeddable_chars`` is what a bundled face should draw of the copy. The
tables here (``SCRIPT_SAMPLES``, ``SCRIPT_FONTS``, ``FC_LANG``) drive the catalogue's fallback.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right

from pipeline.fonts.outlines import drawn_chars, is_visible

SCRIPTS = ("latin", "cyrillic", "greek", "hangul", "japanese", "chinese-simplified", "chinese-traditional",
           "arabic", "hebrew", "thai", "devanagari", "emoji")
CJK_SCRIPTS = frozenset({"hangul", "japanese", "chinese-simplified", "chinese-traditional"})
RTL_SCRIPTS = frozenset({"arabic", "hebrew"})

# (first, last, script); "han" and "kana" are resolved per text (Japanese, Chinese or Korean Hanja).
_RANGES = sorted([
    (0x0370, 0x03FF, "greek"), (0x1F00, 0x1FFF, "greek"),
    (0x0400, 0x052F, "cyrillic"), (0x1C80, 0x1C8F, "cyrillic"), (0x2DE0, 0x2DFF, "cyrillic"),
    (0xA640, 0xA69F, "cyrillic"),
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
FC_LANG = {**SCRIPT_LANG, "chinese-simplified": "zh-cn", "chinese-traditional": "zh-tw", "emoji": "und-zsye"}

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
    scripts = dict(zip(chars, char_scripts(chars), strict=True))
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
