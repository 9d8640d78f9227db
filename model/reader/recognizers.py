"""Personal data in OCR'd text lines: phone numbers, e-mail addresses, postal codes, postal
addresses and messenger IDs, in English and Japanese, plus the cue words that announce them
(TEL, 電話番号, 住所, Ship to, お届け先, LINE ID, 様 ...), returned by category.

Why the context rules. Ordinary images are full of digits that libphonenumber calls a
*possible* number: prices, dates, times, timetables, receipt totals, product codes, ISBNs.
A menu or a receipt must not read as personal data, so a number counts only when it is
written the way people write phone numbers (a national grouping such as 090-1234-5678 or
(769) 555-0156, or +CC), or when a cue word vouches for it; and nothing counts inside a
price, date, time, percentage, version or code, nor after a receipt, timetable or product
cue (合計, 発/着, 番線, SKU, 品番, No. ...). A phone cue to the left (TEL 03-1234-5678)
outweighs those: a receipt header's phone is still a phone.

Why rows. OCR cuts one visual row into several boxes ("TEL" | "090-1234-5678", or one number
over two boxes), and labels often sit on the line above their value ("連絡先" over the
number). So lines whose vertical centres are close and that are horizontally adjacent are
joined into one row, and a cue counts when it is on the same row (nearest to the left wins
over cues further away) or on the row directly above.

Phones come from libphonenumber (`phonenumbers`): its matcher per configured region with
POSSIBLE leniency, merged by span (one number seen by several regions is one finding), then
its validity check for the strong evidence. Not Leniency.VALID alone: the demo images' fiction numbers (555-01xx with random area codes, JP numbers with
random digits) are mostly outside assigned ranges, and real text carries numbers the
metadata does not know yet; a possible-only number needs the national grouping or a strong
cue. A number announced by WhatsApp/LINE/Telegram is a PHONE (the value is a phone number;
the cue shows as "cue:messenger"); MESSENGER_ID is for handles and IDs.

Text is NFKC-normalised first (full-width digits, letters, ＠, hyphens), dash look-alikes
between digits become "-", and O/o/l/I/| inside digit runs become digits, as OCR confuses
them. Nothing here logs or keeps the personal text: a Finding carries only `masked` and
evidence labels.

A finding's confidence is its evidence strength (pattern, validity, cue; capped at 1) times
0.5 + 0.5 x the OCR score of its line(s), so a well-read weak pattern and a badly read strong
one both land mid-scale. Cue categories: phone, contact, email, address, ship_to, name,
messenger, postal."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import phonenumbers

from model.reader.types import Box, CueWord, EntityType, Finding, TextLine

__all__ = ["Recognized", "RecognizerConfig", "mask", "recognize"]


@dataclass(frozen=True)
class RecognizerConfig:
    """Tuning of `recognize`; the defaults are what serving and training use."""

    # libphonenumber region codes tried for numbers written without +CC.
    phone_regions: tuple[str, ...] = ("JP", "US", "GB")
    # Findings below this confidence are dropped (a weak pattern on a poorly read line).
    min_confidence: float = 0.3
    # Two boxes are one row when their vertical centres differ by at most this share of the
    # taller box's height ...
    row_tolerance: float = 0.5
    # ... and the horizontal gap between them is at most this share of the image width.
    row_gap: float = 0.15
    # The row above counts for cue context when the vertical gap is at most this many line heights.
    above_gap: float = 1.5
    # Emit weak patterns without any cue (a bare @handle, a bare UK postcode) at low confidence.
    weak_patterns: bool = True


@dataclass(frozen=True)
class Recognized:
    """One image's findings (ordered by line) and cue words (one per line and category)."""

    findings: tuple[Finding, ...]
    cues: tuple[CueWord, ...]


# ---------------------------------------------------------------------------------------------
# Normalisation

_DIGITS = frozenset("0123456789")
# Hyphen-minus, hyphens, figure/en/em dashes, horizontal bar, minus, full-width hyphen-minus,
# katakana prolonged sound mark, box-drawing lines: what OCR makes of the hyphen in 090-1234.
_DASH_CHARS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\u30fc\u2500\u2501"
_DASH_SET = frozenset(_DASH_CHARS)
_DASH_BETWEEN_DIGITS = re.compile(rf"(?<=[0-9])[{_DASH_CHARS}](?=[0-9])")
_CONFUSABLE_RUN = re.compile(r"[OoIl|]{1,2}")
_CONFUSABLE_MAP = str.maketrans("OoIl|", "00111")
_CONFUSABLE_MAP_KEYS = frozenset("OoIl|")


def _fix_digits(text: str) -> tuple[str, frozenset[int]]:
    """Length-preserving fixes inside digit runs; returns the text and the fixed positions."""
    text = _DASH_BETWEEN_DIGITS.sub("-", text)
    fixed: set[int] = set()
    if not any(c in _DIGITS for c in text):
        return text, frozenset()
    chars = list(text)
    # Two passes: a fix can make the digit that vouches for its neighbour ("09O-l234").
    for _ in range(2):
        before_pass = len(fixed)
        _fix_pass(chars, fixed)
        if len(fixed) == before_pass:
            break
    text = "".join(chars)
    if fixed:
        text = _DASH_BETWEEN_DIGITS.sub("-", text)  # "9Oー1" has digits round its dash only now
    return text, frozenset(fixed)


def _fix_pass(chars: list[str], fixed: set[int]) -> None:
    n = len(chars)
    near = _DIGITS | _CONFUSABLE_MAP_KEYS
    for m in _CONFUSABLE_RUN.finditer("".join(chars)):
        s, e = m.span()
        if (s > 0 and chars[s - 1] in _CONFUSABLE_MAP_KEYS) or (e < n and chars[e] in _CONFUSABLE_MAP_KEYS):
            continue  # part of a longer run of letters: a word, not a misread digit
        before = s > 0 and chars[s - 1] in _DIGITS
        before_dash = s > 1 and chars[s - 1] == "-" and chars[s - 2] in near
        after = e < n and chars[e] in _DIGITS
        after_dash = e + 1 < n and chars[e] == "-" and chars[e + 1] in near
        # Inside a run: one side touches a digit, the other a digit or a hyphen next to one
        # ("09O-l234"). At a run's end only beside three digits and away from letters
        # ("TEL O90-1234-567O"), so "No-1" and "Top 2O" stay words.
        inside = (before and (after or after_dash)) or (after and before_dash)
        edge = e - s == 1 and (
            (_digits_before(chars, s) >= 3 and (e == n or not chars[e].isalnum()))
            or (_digits_after(chars, e) >= 3 and (s == 0 or not chars[s - 1].isalnum()))
        )
        if inside or edge:
            for i in range(s, e):
                chars[i] = chars[i].translate(_CONFUSABLE_MAP)
                fixed.add(i)


def _digits_before(chars: list[str], s: int) -> int:
    i = s
    while i > 0 and chars[i - 1] in _DIGITS:
        i -= 1
    return s - i


def _digits_after(chars: list[str], e: int) -> int:
    """Digits after `e`, counting a following hyphen group as one more (O90-1234 has 2 + 1)."""
    i = e
    while i < len(chars) and chars[i] in _DIGITS:
        i += 1
    count = i - e
    if count >= 2 and i + 1 < len(chars) and chars[i] == "-" and chars[i + 1] in _DIGITS:
        count += 1
    return count


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("\u3000", " ")


# ---------------------------------------------------------------------------------------------
# Cue words, and the blocking cues (receipt, timetable, product, page) that are never
# returned but veto numbers. Alternatives are in priority order: at one position the first
# wins, so longer and blocking forms come first (お問い合わせ番号 is a tracking number's
# label, お問い合わせ alone announces a contact).


@dataclass(frozen=True)
class _CueKind:
    category: str
    weight: float  # 1.0 strong, 0.5 weak; 0 for blockers
    blocker: bool = False


# (group, Japanese/symbol alternatives, Latin alternatives, kind). The two scripts are
# separate regexes: the Latin one is only tried at word starts, which is what keeps the cue
# scan cheap (a combined finditer tried every alternative at every character).
_CUE_TABLE: tuple[tuple[str, str, str, _CueKind], ...] = (
    (
        "product_ja",
        r"お問い?合わ?せ番号|問い?合わ?せ番号|追跡番号|品番|型番|型式|製品番号|商品番号|商品コード|注文番号|伝票番号|"
        r"受付番号|管理番号|会員番号|整理番号|予約番号|口座番号|カード番号|シリアル(?:番号|No)?|ロット|JANコード",
        r"JAN|EAN|ISBN",
        _CueKind("product", 0.0, True),
    ),
    (
        "phone_strong",
        r"電話番号|携帯番号|携帯電話|電話|携帯|ケータイ|固定電話|ファックス|ファクス|[☎☏📞📱✆]",
        r"(?i:tel(?:ephone)?|phone|mobile|cell(?:phone)?|fax)\.?(?:\s?(?i:no\.?|number|#))?",
        _CueKind("phone", 1.0),
    ),
    ("phone_weak", "", r"(?i:call(?:\s?me)?|text\s?me|sms)", _CueKind("phone", 0.5)),
    (
        "contact",
        r"連絡先|ご連絡|お問い?合わ?せ先?|問い?合わ?せ先?",
        r"(?i:contact(?:\s?(?:us|me|info))?|inquiries|enquiries)",
        _CueKind("contact", 0.5),
    ),
    (
        "email",
        r"メールアドレス|メアド|Eメール|メール|アドレス",
        r"(?i:e-?mail(?:\s?address)?|mail)",
        _CueKind("email", 1.0),
    ),
    (
        "ship_to",
        r"お届け先|お届先|届け先|宛先|送り先|送付先|配送先",
        r"(?i:ship(?:ping)?\s?(?:address|to)|deliver(?:y)?\s?(?:address|to)|bill(?:ing)?\s?(?:address|to)|recipient)",
        _CueKind("ship_to", 1.0),
    ),
    ("address", r"ご住所|住所|所在地", r"(?i:address|addr\.?)", _CueKind("address", 1.0)),
    (
        "name",
        # 様 after a name, not in お客様/皆様/様々/同様/模様/仕様: those are everyday words. (Lookbehinds
        # after the literal: tried only where a 様 is, not at every character.)
        r"氏名|お名前|名前|フリガナ|ふりがな|様(?<![客皆各神王同模仕多異殿]様)(?<=[\u4e00-\u9fff\u3041-\u30ff ]様)(?![々子式相])",
        r"(?i:full\s?name|name)",
        _CueKind("name", 0.5),
    ),
    (
        "messenger",
        r"ライン(?:の)?ID|LINEの\s?ID|カカオトーク|カカオ|インスタ(?:グラム)?|微信|ツイッター",
        # LINE in capitals only: "line" is an ordinary English word.
        r"LINE(?:\s?ID)?|(?i:line\s?id)|IG|"
        r"(?i:kakao(?:\s?talk)?|we\s?chat|whats\s?app|telegram|discord|snapchat|instagram|insta|skype|viber)",
        _CueKind("messenger", 1.0),
    ),
    ("postal", r"郵便番号", r"(?i:zip(?:\s?code)?|post\s?code|postal\s?code)", _CueKind("postal", 1.0)),
    ("postal_mark", r"〒", "", _CueKind("postal", 1.0)),
    (
        "product",
        r"№|#(?=\s?[0-9])",
        r"(?i:sku|item\s?(?:no\.?|#|number|code)?|art(?:icle)?\.?\s?no\.?|order\s?(?:no\.?|#|number|id)?|"
        r"invoice\s?(?:no\.?|#)?|receipt\s?(?:no\.?|#)?|ref(?:erence)?\.?\s?(?:no\.?|#)?|serial\s?(?:no\.?|number)?|"
        r"s/n|p/n|part\s?(?:no\.?|#|number)|model\s?(?:no\.?)?|lot\s?(?:no\.?)?|tracking\s?(?:no\.?|#|number)?|"
        r"isbn(?:-1[03])?|ean|upc|barcode|code|batch|ticket\s?(?:no\.?)?|booking\s?(?:ref|no\.?)?|account\s?(?:no\.?)?|"
        r"card\s?(?:no\.?)?|member(?:ship)?\s?(?:no\.?|id)?|id\s?no\.?)|(?:No\.?|NO\.)(?=\s?[0-9])",
        _CueKind("product", 0.0, True),
    ),
    (
        "receipt",
        r"合計|小計|総計|税込|税抜|内税|外税|消費税|税|お釣り?|おつり|釣銭|お預り|お預かり|預り|[0-9]+\s?点",
        r"(?i:sub-?\s?total|total|tax|vat|change|cash|amount|balance|due|tendered)",
        _CueKind("receipt", 0.0, True),
    ),
    (
        "timetable",
        r"番線|のりば|乗り場|発車|到着|出発|特急|快速|急行|各停|行き|[発着](?<=[0-9][発着])|[発着](?<=[0-9] [発着])",
        r"(?i:platform|plat\.|track|dep(?:art(?:ure)?s?)?\.?|arr(?:ival)?s?\.?|gate|train|flight)",
        _CueKind("timetable", 0.0, True),
    ),
    ("page", r"ページ|頁", r"(?i:page|pp?\.)", _CueKind("page", 0.0, True)),
)
_CUE_OTHER_RE = re.compile("|".join(f"(?P<{name}>{other})" for name, other, _, _ in _CUE_TABLE if other))
# Tried with .match at each word start; the trailing guard keeps "Telegram" from reading as "Tel".
_CUE_LATIN_RE = re.compile(
    "|".join(f"(?P<{name}>(?:{latin})(?![A-Za-z]))" for name, _, latin, _ in _CUE_TABLE if latin)
)
_WORD_START = re.compile(r"(?<![A-Za-z])[A-Za-z]")
_CUE_KINDS = {name: kind for name, _, _, kind in _CUE_TABLE}

# ---------------------------------------------------------------------------------------------
# Spans where a number is not a phone, whatever libphonenumber says.

_MONTHS = r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_BLOCKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "price",
        re.compile(
            r"(?:[$¥€£₩]|(?<![A-Za-z])(?:USD|JPY|EUR|GBP|AUD|CAD|US\$|A\$|C\$|HK\$|Rs\.?)) ?[0-9][0-9,]*(?:\.[0-9]+)?|"
            r"[0-9][0-9,]*(?:\.[0-9]+)? ?(?:円|ドル|ユーロ|元|(?:USD|JPY|EUR|GBP|(?i:yen))(?![A-Za-z]))"
        ),
    ),
    ("number", re.compile(r"(?<![0-9])[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")),
    (
        "date",
        re.compile(
            r"(?<![0-9])(?:19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])(?![0-9])|"
            r"(?<![0-9])(?:0?[1-9]|[12][0-9]|3[01])[-/.](?:0?[1-9]|[12][0-9]|3[01])[-/.](?:(?:19|20)[0-9]{2}|[0-9]{2})(?![0-9])|"
            r"(?:[0-9]{2,4}|令和|平成|昭和)\s?年\s?[0-9]{1,2}\s?月(?:\s?[0-9]{1,2}\s?日)?|[0-9]{1,2}\s?月\s?[0-9]{1,2}\s?日|"
            rf"(?<![A-Za-z]){_MONTHS}\.? [0-9]{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)[0-9]{{2}}|"
            rf"(?<![0-9])[0-9]{{1,2}}(?:st|nd|rd|th)? {_MONTHS}\.?,? (?:19|20)[0-9]{{2}}"
        ),
    ),
    (
        "time",
        re.compile(
            r"(?<![0-9:])(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?(?![0-9])|[0-9]{1,2}時(?:[0-9]{1,2}分)?"
        ),
    ),
    ("percent", re.compile(r"[0-9]+(?:\.[0-9]+)? ?%")),
    (
        "version",
        re.compile(r"(?i:v|ver\.?|version) ?[0-9]+(?:\.[0-9]+)+|(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){2,}(?![0-9.])"),
    ),
    ("isbn", re.compile(r"(?<![0-9])97[89](?:[- ]?[0-9]){10}(?![0-9])")),
    ("long_digits", re.compile(r"(?<![0-9+])[0-9]{12,}")),
)
# One pass over a row; at one position the first kind wins (a price before a bare number,
# a date before a time), which is all the overlap tests need.
_BLOCKER_RE = re.compile("|".join(f"(?P<{kind}>{pattern.pattern})" for kind, pattern in _BLOCKERS))

# ---------------------------------------------------------------------------------------------
# Entity patterns

# A run that could hold a phone number: digits with the separators people use, single spaces.
_PHONE_CANDIDATE = re.compile(r"(?:\+ ?)?\(?[0-9](?:[0-9()\-./]| (?=[0-9(\-]))*[0-9]")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_JP_MOBILE_BARE = re.compile(r"0[5789]0[0-9]{8}")

_TLDS = (
    "com|net|org|edu|gov|info|biz|io|me|co|jp|uk|us|ca|au|de|fr|it|es|nl|kr|cn|tw|hk|sg|nz|in|ch|se|no|fi|dk|"
    "be|at|ie|pl|br|mx|ru|example|test|invalid|app|dev|ne|ac|or|go"
)
_EMAIL_STRICT = re.compile(
    r"(?<![A-Za-z0-9._%+\-])(?P<local>[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![A-Za-z0-9@])"
)
# OCR puts spaces around "@" and "." ("taro @ example . com"); accepted only when the address
# ends in a known top-level domain, so prose with a stray "@" does not read as an address.
_EMAIL_SPACED = re.compile(
    r"(?<![A-Za-z0-9._%+\-])(?P<local>[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?) ?@ ?"
    rf"(?P<domain>(?:[A-Za-z0-9][A-Za-z0-9\-]{{0,62}} ?\. ?)+(?i:{_TLDS}))(?![A-Za-z0-9@])"
)
# "taro (at) example (dot) com" needs no cue; "taro at example dot com" only with an e-mail or
# contact cue: "at" is an ordinary word.
_EMAIL_SPELLED = re.compile(
    r"(?<![A-Za-z0-9._%+\-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}) ?(?P<at>[(\[{<] ?(?i:at) ?[)\]}>]| (?i:at) )"
    r" ?(?P<domain>[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?: ?(?:[(\[{<] ?(?i:dot) ?[)\]}>]| (?i:dot) |\.) ?[A-Za-z0-9][A-Za-z0-9\-]{0,62})+)"
    r"(?![A-Za-z0-9])"
)
_SPELLED_DOT = re.compile(r" ?(?:[(\[{<] ?(?i:dot) ?[)\]}>]| (?i:dot) |\.) ?")
_TLD_SET = frozenset(_TLDS.split("|"))

_JP_POSTAL_MARK = re.compile(r"〒 ?(?P<code>[0-9]{3} ?- ?[0-9]{4}|[0-9]{7})(?![0-9])")
_JP_POSTAL_BARE = re.compile(r"(?<![0-9\-])[0-9]{3}-[0-9]{4}(?![0-9]|-[0-9])")
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|"
    "OH|OK|OR|PA|PR|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_US_ZIP = re.compile(rf"(?<![A-Za-z])(?P<state>{_US_STATES}),? (?P<zip>[0-9]{{5}}(?:-[0-9]{{4}})?)(?![0-9])")
_ZIP_AFTER_CUE = re.compile(r"[\s:#.]*(?P<zip>[0-9]{5}(?:-[0-9]{4})?|[0-9]{3}-?[0-9]{4})(?![0-9])")
# Outward code, optional space, inward code (inward letters never C, I, K, M, O, V).
_UK_POSTCODE = re.compile(
    r"(?<![A-Za-z0-9])(?P<out>[A-Z]{1,2}[0-9][A-Z0-9]?)(?P<sp> ?)(?P<in>[0-9][ABD-HJLNP-UW-Z]{2})(?![A-Za-z0-9])"
)

_STREET_KINDS = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Parkway|Pkwy|"
    "Highway|Hwy|Circle|Cir|Square|Sq|Close|Crescent|Cres|Gardens|Grove|Mews|Row|Alley|Plaza"
)
_STREET_WORDS = frozenset(
    [
        *_STREET_KINDS.split("|"),
        *("Apt", "Apartment", "Suite", "Ste", "Unit", "Flat", "Floor", "Fl", "PO", "Box"),
        *("North", "South", "East", "West", "N", "S", "E", "W", "NE", "NW", "SE", "SW"),
    ]
)
# Capitalised street kinds only: "2 miles down the road" is prose, "12 Oak Road" an address.
_US_STREET = re.compile(
    r"(?<![A-Za-z0-9])[0-9]{1,6}[A-Za-z]? (?:(?:[NSEW]|North|South|East|West)\.? )?(?:[A-Z][A-Za-z'\-]* ){1,3}"
    rf"(?:{_STREET_KINDS})(?![A-Za-z])\.?(?: (?:[NS][EW]?|[EW])(?![A-Za-z]))?(?:,? ?(?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|#)\.? ?#? ?[A-Za-z0-9\-]+)?"
)
_PO_BOX = re.compile(r"(?<![A-Za-z])(?i:p\.? ?o\.? box) ?[0-9]+")

_PREFECTURES = (
    "北海道|東京都|京都府|大阪府|(?:青森|岩手|宮城|秋田|山形|福島|茨城|栃木|群馬|埼玉|千葉|神奈川|新潟|富山|石川|福井|"
    "山梨|長野|岐阜|静岡|愛知|三重|滋賀|兵庫|奈良|和歌山|鳥取|島根|岡山|広島|山口|徳島|香川|愛媛|高知|福岡|佐賀|長崎|熊本|"
    "大分|宮崎|鹿児島|沖縄)県"
)
_KANJI_KANA = r"\u3005\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff"
_KANJI_KATA = r"\u3005\u30a1-\u30fa\u30fc\u4e00-\u9fff"
_JP_BLOCK = r"[0-9]+(?:-[0-9]+){1,3}|[0-9]+(?:丁目|番地?|号)|[一二三四五六七八九十]+丁目"
_JP_ADDR_PREF = re.compile(rf"(?P<pref>{_PREFECTURES})(?P<rest>(?:[{_KANJI_KANA}]|[0-9]+(?:-[0-9]+)*)*)")
# Without a prefecture: a city or ward, a town name, then block numbers (新宿区西新宿2-8-1).
# Kanji and katakana only before 市/区, so a hiragana sentence does not become a city name.
_JP_ADDR_WARD = re.compile(
    rf"[{_KANJI_KATA}]{{1,5}}?[市区](?:[{_KANJI_KANA}]){{0,8}}?(?:{_JP_BLOCK})(?:[0-9]+(?:番地?|号)|-[0-9]+)*"
)
_JP_BLOCK_ONLY = re.compile(rf"(?:{_JP_BLOCK})(?:[0-9]+(?:番地?|号)|-[0-9]+)*")
_JP_BLOCK_IN = re.compile(_JP_BLOCK)
_JP_MUNI = re.compile(rf"[{_KANJI_KANA}]{{1,6}}?[市区郡町村]")
_JP_PREF_START = re.compile(rf"(?:{_PREFECTURES})")

_HANDLE = re.compile(r"(?<![A-Za-z0-9_@.])@(?P<h>[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?)(?![A-Za-z0-9_@])")
_AFTER_MESSENGER = re.compile(
    # "は" / "：" after a Japanese cue ("LINEのIDは hina09 です") separates like a colon.
    r"(?P<id> ?(?i:id))?(?P<sep> ?[:=は] ?| )(?P<h>@?[A-Za-z0-9][A-Za-z0-9._\-]{1,31})(?P<more> [A-Za-z]+)?"
)
_ID_FIELD = re.compile(r"(?<![A-Za-z])(?i:id) ?[:=] ?(?P<h>@?[A-Za-z0-9][A-Za-z0-9._\-]{1,31})")
_LONE_HANDLE = re.compile(r"@?[A-Za-z0-9][A-Za-z0-9._\-]{2,31}")

# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    group: str
    kind: _CueKind


@dataclass
class _Row:
    lines: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    text: str
    box: Box
    fixed: frozenset[int]
    cues: list[_Cue] = field(default_factory=list)
    blocked: list[tuple[int, int, str]] = field(default_factory=list)
    timetable: bool = False
    above: int | None = None


def _height(box: Box) -> float:
    return max(box[3] - box[1], 1e-6)


def _same_row(a: Box, b: Box, config: RecognizerConfig) -> bool:
    h = max(_height(a), _height(b))
    if abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) > config.row_tolerance * h:
        return False
    return max(a[0], b[0]) - min(a[2], b[2]) <= config.row_gap


def _union(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _build_rows(lines: Sequence[TextLine], config: RecognizerConfig) -> list[_Row]:
    n = len(lines)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = [line.box for line in lines]
    centres = [(b[1] + b[3]) / 2 for b in boxes]
    heights = [_height(b) for b in boxes]
    # Sorted by centre, a box is compared only with those whose centre is close enough.
    order = sorted(range(n), key=centres.__getitem__)
    tallest = max(heights) if heights else 0.0
    for a, i in enumerate(order):
        for j in order[a + 1 :]:
            dy = centres[j] - centres[i]
            if dy > config.row_tolerance * tallest:
                break
            if dy <= config.row_tolerance * max(heights[i], heights[j]) and _same_row(boxes[i], boxes[j], config):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    texts = [_nfkc(line.text) for line in lines]
    rows: list[_Row] = []
    for members in groups.values():
        members.sort(key=lambda i: (lines[i].box[0], i))
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        pos = 0
        for i in members:
            t = texts[i]
            if parts:
                prev = parts[-1]
                # A number cut over two boxes ("090-" | "1234-5678") is glued back; other
                # neighbours get a space so words and numbers stay apart.
                glue = (prev[-1:] in _DIGITS and t[:1] in _DASH_SET) or (prev[-1:] in _DASH_SET and t[:1] in _DIGITS)
                sep = "" if glue else " "
                parts.append(sep)
                pos += len(sep)
            parts.append(t)
            spans.append((pos, pos + len(t)))
            pos += len(t)
        text, fixed = _fix_digits("".join(parts))
        rows.append(_Row(tuple(members), tuple(spans), text, _union([lines[i].box for i in members]), fixed))
    rows.sort(key=lambda r: (r.box[1], r.box[0]))
    for ri, row in enumerate(rows):
        best: tuple[float, float] | None = None
        for si, other in enumerate(rows):
            if si == ri or (other.box[1] + other.box[3]) >= (row.box[1] + row.box[3]):
                continue
            h = max(_height(row.box), _height(other.box))
            gap = row.box[1] - other.box[3]
            overlap = min(row.box[2], other.box[2]) - max(row.box[0], other.box[0])
            if -0.5 * h <= gap <= config.above_gap * h and overlap > 0:
                key = (gap, -overlap)
                if best is None or key < best:
                    best, row.above = key, si
    return rows


def _scan_row(row: _Row) -> None:
    text = row.text
    if not text.isascii() or "#" in text:
        for m in _CUE_OTHER_RE.finditer(text):
            if m.lastgroup is not None:
                row.cues.append(_Cue(m.start(), m.end(), m.lastgroup, _CUE_KINDS[m.lastgroup]))
    done = 0
    for w in _WORD_START.finditer(text):
        if w.start() < done:
            continue
        lm = _CUE_LATIN_RE.match(text, w.start())
        if lm is not None and lm.lastgroup is not None:
            row.cues.append(_Cue(lm.start(), lm.end(), lm.lastgroup, _CUE_KINDS[lm.lastgroup]))
            done = lm.end()
    row.cues.sort(key=lambda c: c.start)
    if not any(c in _DIGITS for c in text):
        return
    for bm in _BLOCKER_RE.finditer(text):
        if bm.lastgroup is not None:
            row.blocked.append((bm.start(), bm.end(), bm.lastgroup))
    times = sum(1 for _, _, kind in row.blocked if kind == "time")
    has_timetable_cue = any(c.kind.category == "timetable" for c in row.cues)
    # Several times on one row is a timetable or opening hours; one time with a platform or
    # 発/着 cue is a departure board.
    row.timetable = times >= 2 or (times >= 1 and has_timetable_cue)


# ---------------------------------------------------------------------------------------------
# Candidates


@dataclass
class _Cand:
    entity: EntityType
    row: int
    start: int
    end: int
    strength: float
    evidence: list[str]
    shown: str  # what mask() is given: the matched text, or its canonical form
    priority: int  # overlapping candidates: the higher wins


_PRIORITY = {
    EntityType.EMAIL: 6,
    EntityType.POSTAL_CODE: 5,
    EntityType.PHONE: 4,
    EntityType.ADDRESS: 3,
    EntityType.MESSENGER_ID: 2,
}


def _put(
    out: list[_Cand],
    entity: EntityType,
    ri: int,
    span: tuple[int, int],
    strength: float,
    evidence: list[str],
    shown: str,
    priority: int | None = None,
) -> None:
    out.append(
        _Cand(
            entity, ri, span[0], span[1], strength, evidence, shown, _PRIORITY[entity] if priority is None else priority
        )
    )


@dataclass(frozen=True)
class _Context:
    row: dict[str, float]  # personal cue category -> strongest weight, same row
    above: dict[str, float]  # the same for the row above
    nearest_left: _Cue | None  # the closest cue of any kind ending before the span
    row_blockers: frozenset[str]
    above_blockers: frozenset[str]


def _context(rows: list[_Row], ri: int, start: int, end: int, reach: int = 1) -> _Context:
    row = rows[ri]
    same: dict[str, float] = {}
    nearest: _Cue | None = None
    blockers: set[str] = set()
    for cue in row.cues:
        if cue.start >= start and cue.end <= end:
            continue
        if cue.kind.blocker:
            blockers.add(cue.kind.category)
        else:
            same[cue.kind.category] = max(same.get(cue.kind.category, 0.0), cue.kind.weight)
        if cue.end <= start and (nearest is None or cue.end > nearest.end):
            nearest = cue
    above: dict[str, float] = {}
    above_blockers: set[str] = set()
    index = row.above
    for _ in range(reach):
        if index is None:
            break
        for cue in rows[index].cues:
            if cue.kind.blocker:
                above_blockers.add(cue.kind.category)
            else:
                above[cue.kind.category] = max(above.get(cue.kind.category, 0.0), cue.kind.weight)
        index = rows[index].above
    return _Context(same, above, nearest, frozenset(blockers), frozenset(above_blockers))


def _overlaps(spans: Sequence[tuple[int, int, str]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e, _ in spans)


def _cue_bonus(ctx: _Context, wanted: dict[str, float], evidence: list[str]) -> float:
    """The bonus the best cue gives (same row full, row above 80 %), recording which."""
    best = 0.0
    best_label = ""
    for where, cues, factor in (("cue", ctx.row, 1.0), ("cue_above", ctx.above, 0.8)):
        for category, weight in cues.items():
            bonus = wanted.get(category, 0.0) * weight * factor
            if bonus > best:
                best, best_label = bonus, f"{where}:{category}"
    if best_label:
        evidence.append(best_label)
    return best


_PHONE_CUES = {"phone": 0.25, "messenger": 0.2, "contact": 0.25, "name": 0.1, "address": 0.1, "ship_to": 0.1}
_PHONE_CUES.update(email=0.05, postal=0.05)
_EMAIL_CUES = {"email": 0.15, "contact": 0.1, "name": 0.05, "ship_to": 0.05, "messenger": 0.05}
_ADDRESS_CUES = {"address": 0.2, "ship_to": 0.2, "postal": 0.15, "name": 0.1, "contact": 0.1}
_MESSENGER_CUES = {"messenger": 0.35, "contact": 0.15, "name": 0.05}


def _phone_shape(raw: str) -> str | None:
    """How the number is grouped, if the way people write phones: 'intl', 'jp', 'nanp', 'gb'."""
    groups = _DIGIT_GROUP.findall(raw)
    if not groups:
        return None
    lens = [len(g) for g in groups]
    n = sum(lens)
    if raw.lstrip("( ").startswith("+"):
        return "intl" if 8 <= n <= 15 else None
    first = groups[0]
    if len(groups) == 1:
        return "jp_mobile" if _JP_MOBILE_BARE.fullmatch(first) else None
    if n == 10 and lens == [3, 3, 4]:
        return "nanp"
    if n == 11 and lens == [1, 3, 3, 4] and first == "1":
        return "nanp"
    if first.startswith("0") and n in (10, 11):
        if len(groups) == 3 and lens[2] == 4 and 2 <= lens[0] <= 5:
            return "jp"
        if first in ("0120", "0800") and lens in ([4, 3, 3], [4, 2, 4], [4, 3, 4]):
            return "jp"
        if lens in ([3, 4, 4], [4, 3, 4], [5, 6], [4, 6], [5, 3, 3], [4, 4, 3], [3, 3, 4], [4, 3, 3]):
            return "gb"
    return None


_SHAPE_REGION = {"nanp": "US", "jp": "JP", "jp_mobile": "JP", "gb": "GB"}


def _valid_region(number: phonenumbers.PhoneNumber, region: str, international: bool) -> str | None:
    """The region in which the number is valid, or None."""
    cc = number.country_code
    if cc == 1:
        # is_valid_number walks all ~25 NANP regions for +1, most of the phone stage's time on
        # an invalid (fiction) number; the US and Canada are the ones that matter here.
        return next((r for r in ("US", "CA") if phonenumbers.is_valid_number_for_region(number, r)), None)
    if not phonenumbers.is_valid_number(number):
        return None
    return (phonenumbers.region_code_for_country_code(cc) if international and cc else region) or region


def _phone_matches(text: str, offset: int, regions: tuple[str, ...]) -> dict[tuple[int, int], set[str]]:
    """Spans libphonenumber matches (POSSIBLE), merged across regions, with the regions in
    which the number is valid (empty: possible only)."""
    found: dict[tuple[int, int], set[str]] = {}
    international = text.lstrip("( ").startswith("+")
    shape = _phone_shape(text)
    preferred = _SHAPE_REGION.get(shape or "")
    if international:
        regions = regions[:1]  # the country code decides; one region is enough
    elif preferred in regions:
        # The region the grouping points at first: the usual answer, and often the only call.
        regions = (preferred, *(r for r in regions if r != preferred))
    for region in regions:
        whole = False
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            valid = found.setdefault((offset + m.start, offset + m.end), set())
            covers = m.start == 0 and m.end == len(text)
            valid_in = _valid_region(m.number, region, international)
            if valid_in:
                valid.add(valid_in)
                whole = whole or covers
            elif covers and shape == "nanp" and region == preferred:
                # (338) 555-0137 is written the North American way; another region calling
                # those ten digits valid would be a coincidence, not evidence.
                whole = True
        if whole:
            break  # other regions would only say the same, at ~50 µs each
    return found


def _phones(rows: list[_Row], ri: int, config: RecognizerConfig, out: list[_Cand]) -> None:
    row = rows[ri]
    text = row.text
    spans: dict[tuple[int, int], set[str]] = {}
    for cm in _PHONE_CANDIDATE.finditer(text):
        segment = cm.group()
        if sum(c in _DIGITS for c in segment) < 7:
            continue
        # The context rules first: they are cheap, libphonenumber is not.
        if _covered(row.blocked, cm.start(), cm.end()) or _phone_context(rows, ri, cm.start(), cm.end()) is None:
            continue
        found = _phone_matches(segment, cm.start(), config.phone_regions)
        # A number glued to a neighbour by a single space ("1280 090-1234-5678") can come back
        # as one implausible match: retry from each later space-separated group.
        if not any(_phone_shape(text[s:e]) or v for (s, e), v in found.items()):
            for sm in re.finditer(r" (?=[0-9(+])", segment):
                sub = segment[sm.end() :]
                if sum(c in _DIGITS for c in sub) >= 7:
                    found.update(_phone_matches(sub, cm.start() + sm.end(), config.phone_regions))
        for key, valid in found.items():
            spans.setdefault(key, set()).update(valid)
    if not spans:
        return
    # One number seen by several regions, or a region seeing a shorter piece: keep the valid,
    # then the longest, among overlapping spans.
    ordered = sorted(spans.items(), key=lambda kv: (not kv[1], -(kv[0][1] - kv[0][0]), kv[0][0]))
    kept: list[tuple[int, int, set[str]]] = []
    for (s, e), valid in ordered:
        if not any(s < ke and ks < e for ks, ke, _ in kept):
            kept.append((s, e, valid))
    for s, e, valid in kept:
        cand = _judge_phone(rows, ri, s, e, valid)
        if cand is not None:
            out.append(cand)


def _covered(spans: Sequence[tuple[int, int, str]], start: int, end: int) -> bool:
    """Whether every digit position in start..end lies in one of the spans."""
    return all(any(s <= i < e for s, e, _ in spans) for i in range(start, end))


def _phone_context(rows: list[_Row], ri: int, s: int, e: int) -> _Context | None:
    """The cue context of a number at s..e, or None where the row's context rules it out."""
    row = rows[ri]
    ctx = _context(rows, ri, s, e)
    left = ctx.nearest_left
    if left is not None and left.kind.blocker:
        return None  # "Order No. 0312345678", "合計 1280", "Platform 3": the nearer cue decides
    left_phone = left is not None and left.kind.category in ("phone", "messenger", "contact")
    row_phone = ctx.row.get("phone", 0.0) >= 1.0 or ctx.row.get("messenger", 0.0) >= 1.0
    if row.timetable and not left_phone:
        return None
    if "receipt" in ctx.row_blockers and not row_phone:
        return None
    if not ctx.row and ctx.above_blockers & {"product", "timetable"}:
        return None  # a column under an "SKU" or "発車時刻" header
    return ctx


def _judge_phone(rows: list[_Row], ri: int, s: int, e: int, valid: set[str]) -> _Cand | None:
    row = rows[ri]
    text = row.text
    raw = text[s:e]
    # Part of a longer code (an ISBN, a card number, a serial with more groups).
    if (e < len(text) and text[e] in _DIGITS) or (s > 0 and text[s - 1] in _DIGITS):
        return None
    if re.match(r"[-./][0-9]", text[e : e + 2]) or re.search(r"[0-9][-./]$", text[max(0, s - 2) : s]):
        return None
    if _overlaps(row.blocked, s, e):
        return None
    ctx = _phone_context(rows, ri, s, e)
    if ctx is None:
        return None
    left = ctx.nearest_left
    left_phone = left is not None and left.kind.category in ("phone", "messenger", "contact")
    phone_cue = max(ctx.row.get("phone", 0.0), ctx.above.get("phone", 0.0) * 0.8)
    groups = _DIGIT_GROUP.findall(raw)
    n = sum(len(g) for g in groups)
    shape = _phone_shape(raw)
    plus = raw.lstrip("( ").startswith("+")
    evidence: list[str] = []
    if len(groups) == 1 and not plus and shape is None and phone_cue < 0.8 and not left_phone:
        return None  # an unseparated run of digits is an ID more often than a phone
    if left is not None and left.kind.category == "messenger" and "ID" in text[left.start : s].upper() and not shape:
        return None  # "Kakao ID: 12345678" is the messenger ID itself
    vouched = left_phone or any(
        cues.get(category, 0.0) > 0 for cues in (ctx.row, ctx.above) for category in ("phone", "messenger", "contact")
    )
    if valid and (shape or vouched):
        # Valid but oddly grouped (12-345-6789, a batch or account number) needs a cue.
        strength = 0.75 if shape else 0.6
        evidence.append("phonenumbers:" + ",".join(sorted(valid)))
    elif shape:
        strength = 0.55
        evidence.append("phonenumbers:possible")
    elif (phone_cue >= 0.8 or left_phone) and n >= 7:
        strength = 0.4
        evidence.append("phonenumbers:possible")
    else:
        return None
    if shape:
        evidence.append(f"shape:{shape}")
    bonus = _cue_bonus(ctx, _PHONE_CUES, evidence)
    strength += bonus
    if any(kind == "price" for _, _, kind in row.blocked) and bonus < 0.2:
        strength -= 0.1
        evidence.append("context:price_in_row")
    if any(s <= i < e for i in row.fixed):
        strength -= 0.05
        evidence.append("ocr:digit_fix")
    return _Cand(EntityType.PHONE, ri, s, e, strength, evidence, raw, _PRIORITY[EntityType.PHONE])


def _emails(rows: list[_Row], ri: int, out: list[_Cand]) -> None:
    text = rows[ri].text
    if "@" not in text and "at" not in text.lower():
        return
    taken: list[tuple[int, int, str]] = []
    for m in _EMAIL_STRICT.finditer(text):
        taken.append((m.start(), m.end(), ""))
        evidence = ["email:format"]
        strength = 0.8 + _cue_bonus(_context(rows, ri, m.start(), m.end()), _EMAIL_CUES, evidence)
        _put(out, EntityType.EMAIL, ri, m.span(), strength, evidence, m.group())
    for m in _EMAIL_SPACED.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        taken.append((m.start(), m.end(), ""))
        canonical = m.group("local") + "@" + re.sub(r" ?\. ?", ".", m.group("domain"))
        evidence = ["email:spaced"]
        strength = 0.6 + _cue_bonus(_context(rows, ri, m.start(), m.end()), _EMAIL_CUES, evidence)
        _put(out, EntityType.EMAIL, ri, m.span(), strength, evidence, canonical)
    for m in _EMAIL_SPELLED.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        labels = _SPELLED_DOT.split(m.group("domain"))
        if labels[-1].lower() not in _TLD_SET:
            continue
        bracketed = m.group("at").strip()[:1] in "([{<"
        ctx = _context(rows, ri, m.start(), m.end())
        evidence = ["email:spelled"]
        bonus = _cue_bonus(ctx, _EMAIL_CUES, evidence)
        if not bracketed and not (set(ctx.row) | set(ctx.above)) & {"email", "contact"}:
            continue
        canonical = m.group("local") + "@" + ".".join(labels)
        strength = (0.6 if bracketed else 0.45) + bonus
        _put(out, EntityType.EMAIL, ri, m.span(), strength, evidence, canonical)


def _has_street(rows: list[_Row], ri: int) -> bool:
    return bool(_US_STREET.search(rows[ri].text) or _PO_BOX.search(rows[ri].text))


def _near_rows(rows: list[_Row], ri: int) -> list[int]:
    """The row itself, the row above, and the rows that have it as their row above."""
    near = [ri]
    above = rows[ri].above
    if above is not None:
        near.append(above)
    near.extend(i for i, r in enumerate(rows) if r.above == ri)
    return near


def _postal(rows: list[_Row], ri: int, config: RecognizerConfig, out: list[_Cand]) -> None:
    row = rows[ri]
    text = row.text
    has_digit = any(c in _DIGITS for c in text)
    if not has_digit:
        return
    taken: list[tuple[int, int, str]] = []
    for m in _JP_POSTAL_MARK.finditer(text):
        taken.append((m.start(), m.end(), ""))
        evidence = ["postal:mark"]
        strength = 0.85 + _cue_bonus(_context(rows, ri, m.start(), m.end(), reach=2), _ADDRESS_CUES, evidence)
        _put(out, EntityType.POSTAL_CODE, ri, m.span(), strength, evidence, m.group())
    for m in _US_ZIP.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        taken.append((m.start(), m.end(), ""))
        evidence = ["zip:state"]
        strength = 0.65
        if any(_has_street(rows, i) for i in _near_rows(rows, ri)):
            strength += 0.15
            evidence.append("near:street")
        strength += _cue_bonus(_context(rows, ri, m.start(), m.end(), reach=2), _ADDRESS_CUES, evidence)
        _put(out, EntityType.POSTAL_CODE, ri, m.span(), strength, evidence, m.group())
    # A postal-code cue word vouches for the number after it (the row below: the bare pattern).
    for cue in row.cues:
        if cue.group != "postal":
            continue
        zm = _ZIP_AFTER_CUE.match(text, cue.end)
        if zm is not None and not _overlaps(taken, zm.start("zip"), zm.end("zip")):
            taken.append((zm.start("zip"), zm.end("zip"), ""))
            _put(out, EntityType.POSTAL_CODE, ri, zm.span("zip"), 0.8, ["postal:cue"], zm.group("zip"))
    above_postal = row.above is not None and any(c.group == "postal" for c in rows[row.above].cues)
    for m in _JP_POSTAL_BARE.finditer(text):
        if _overlaps(taken, m.start(), m.end()) or _overlaps(row.blocked, m.start(), m.end()):
            continue
        after = text[m.end() :]
        below_address = any(r.above == ri and _JP_ADDR_PREF.search(r.text) for r in rows)
        if above_postal:
            strength, evidence = 0.8, ["postal:cue_above"]
        elif _JP_ADDR_PREF.search(after) or below_address:
            strength, evidence = 0.65, ["postal:before_address"]
        else:
            continue  # 123-4567 alone is as likely a local phone number's tail or a code
        taken.append((m.start(), m.end(), ""))
        _put(out, EntityType.POSTAL_CODE, ri, m.span(), strength, evidence, m.group(), priority=3)
    for m in _UK_POSTCODE.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        ctx = _context(rows, ri, m.start(), m.end(), reach=2)
        evidence = ["uk_postcode"]
        street = any(_has_street(rows, i) for i in _near_rows(rows, ri))
        bonus = _cue_bonus(ctx, _ADDRESS_CUES, evidence)
        if street:
            strength = 0.8
            evidence.append("near:street")
        elif bonus:
            strength = 0.65
        elif config.weak_patterns and m.group("sp"):
            strength = 0.4  # the pattern alone: plausible, but codes and call signs share it
        else:
            continue
        taken.append((m.start(), m.end(), ""))
        _put(out, EntityType.POSTAL_CODE, ri, m.span(), strength + bonus, evidence, m.group())


def _addresses(rows: list[_Row], ri: int, out: list[_Cand]) -> None:
    text = rows[ri].text
    taken: list[tuple[int, int, str]] = []
    for m in _JP_ADDR_PREF.finditer(text):
        rest = m.group("rest")
        muni = _JP_MUNI.match(rest) is not None or bool(re.search("[市区郡町村]", rest))
        block = _JP_BLOCK_IN.search(rest) is not None
        ctx = _context(rows, ri, m.start(), m.end(), reach=2)
        evidence = ["jp_address:prefecture"]
        bonus = _cue_bonus(ctx, _ADDRESS_CUES, evidence)
        if muni and block:
            strength = 0.85
            evidence += ["jp_address:municipality", "jp_address:block"]
        elif muni and bonus:
            strength = 0.5  # a place name becomes an address only when a cue says so
            evidence.append("jp_address:municipality")
        else:
            continue
        taken.append((m.start(), m.end(), ""))
        _put(out, EntityType.ADDRESS, ri, m.span(), strength + bonus, evidence, m.group())
    for m in _JP_ADDR_WARD.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        taken.append((m.start(), m.end(), ""))
        evidence = ["jp_address:municipality", "jp_address:block"]
        strength = 0.65 + _cue_bonus(_context(rows, ri, m.start(), m.end(), reach=2), _ADDRESS_CUES, evidence)
        _put(out, EntityType.ADDRESS, ri, m.span(), strength, evidence, m.group())
    for m in _US_STREET.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        taken.append((m.start(), m.end(), ""))
        evidence = ["street"]
        strength = 0.65
        near = _near_rows(rows, ri)
        if any(_US_ZIP.search(rows[i].text) or _UK_POSTCODE.search(rows[i].text) for i in near):
            strength += 0.15
            evidence.append("near:postal_code")
        strength += _cue_bonus(_context(rows, ri, m.start(), m.end(), reach=2), _ADDRESS_CUES, evidence)
        _put(out, EntityType.ADDRESS, ri, m.span(), strength, evidence, m.group())
    for m in _PO_BOX.finditer(text):
        if _overlaps(taken, m.start(), m.end()):
            continue
        taken.append((m.start(), m.end(), ""))
        evidence = ["po_box"]
        strength = 0.6 + _cue_bonus(_context(rows, ri, m.start(), m.end(), reach=2), _ADDRESS_CUES, evidence)
        _put(out, EntityType.ADDRESS, ri, m.span(), strength, evidence, m.group())
    # 3丁目5番地 with nothing before it: an address only under an address cue.
    for m in _JP_BLOCK_ONLY.finditer(text):
        if _overlaps(taken, m.start(), m.end()) or not re.search("丁目|番地|号", m.group()):
            continue
        ctx = _context(rows, ri, m.start(), m.end(), reach=2)
        if not (set(ctx.row) | set(ctx.above)) & {"address", "ship_to"}:
            continue
        evidence = ["jp_address:block"]
        strength = 0.4 + _cue_bonus(ctx, _ADDRESS_CUES, evidence)
        _put(out, EntityType.ADDRESS, ri, m.span(), strength, evidence, m.group())


def _messenger(rows: list[_Row], ri: int, config: RecognizerConfig, out: list[_Cand]) -> None:
    row = rows[ri]
    text = row.text
    taken: list[tuple[int, int, str]] = []

    def add(s: int, e: int, strength: float, evidence: list[str]) -> None:
        if _overlaps(taken, s, e):
            return
        taken.append((s, e, ""))
        _put(out, EntityType.MESSENGER_ID, ri, (s, e), strength, evidence, text[s:e])

    for cue in row.cues:
        if cue.kind.category != "messenger":
            continue
        m = _AFTER_MESSENGER.match(text, cue.end)
        if m is None:
            continue
        handle = m.group("h")
        explicit = (
            ":" in m.group("sep")
            or "=" in m.group("sep")
            or "は" in m.group("sep")
            or m.group("id") is not None
            or text[cue.start : cue.end].upper().endswith("ID")
            or handle.startswith("@")
        )
        # After "LINE:" or "WeChat ID" almost anything is the ID, but not prose ("Insta:
        # follow us"). Without a colon or ID only a handle-looking token (letters with digits,
        # _ or .) counts: "Instagram photos" and "LINE 12" are not IDs.
        prose = handle.isalpha() and m.group("more") is not None
        looks_like_handle = bool(re.search("[A-Za-z]", handle) and re.search(r"[0-9_.]", handle))
        if prose or not (explicit or looks_like_handle):
            continue
        add(m.start("h"), m.end("h"), 0.9, ["messenger:cue", "cue:messenger"])
    above_row = rows[row.above] if row.above is not None else None
    above_messenger = above_row is not None and any(c.kind.category == "messenger" for c in above_row.cues)
    row_messenger = any(c.kind.category == "messenger" for c in row.cues)
    if above_messenger or row_messenger:
        for m in _ID_FIELD.finditer(text):
            where = "cue" if row_messenger else "cue_above"
            add(m.start("h"), m.end("h"), 0.8, ["messenger:id_field", f"{where}:messenger"])
        # A label row ("LINE ID") over a lone token: the token is the ID when the label says
        # ID or the token looks like a handle; "LINE" over "OPEN" is a sign, not an ID.
        stripped = text.strip()
        label_says_id = above_row is not None and any(
            c.kind.category == "messenger" and above_row.text[c.start : c.end].upper().endswith("ID")
            for c in above_row.cues
        )
        lone = not row.cues and _LONE_HANDLE.fullmatch(stripped) and re.search("[A-Za-z]", stripped)
        if above_messenger and lone and (label_says_id or re.search(r"[0-9_.@]", stripped)):
            s = text.index(stripped)
            add(s, s + len(stripped), 0.7, ["messenger:below_cue", "cue_above:messenger"])
    for m in _HANDLE.finditer(text):
        handle = m.group("h")
        if not re.search("[A-Za-z]", handle) or re.search(rf"\.(?:{_TLDS})$", handle, re.IGNORECASE):
            continue  # "@3.50" is a price, "@example.com" an address missing its name
        ctx = _context(rows, ri, m.start(), m.end())
        evidence = ["handle"]
        bonus = _cue_bonus(ctx, _MESSENGER_CUES, evidence)
        if not bonus and not config.weak_patterns:
            continue
        add(m.start(), m.end(), 0.45 + bonus, evidence)


def _resolve(cands: list[_Cand]) -> list[_Cand]:
    """Overlapping candidates on one row: the higher priority, then the stronger, wins."""
    kept: list[_Cand] = []
    for cand in sorted(cands, key=lambda c: (-c.priority, -c.strength, c.start)):
        if not any(k.row == cand.row and k.start < cand.end and cand.start < k.end for k in kept):
            kept.append(cand)
    return kept


def recognize(lines: Sequence[TextLine], config: RecognizerConfig = RecognizerConfig()) -> Recognized:
    """The personal data and cue words in one image's OCR lines. Pure: no I/O, no state."""
    if not lines:
        return Recognized((), ())
    rows = _build_rows(lines, config)
    cues: dict[tuple[int, str], CueWord] = {}
    for row in rows:
        _scan_row(row)
        for cue in row.cues:
            if cue.kind.blocker:
                continue
            line = _line_at(row, cue.start)
            cues.setdefault((line, cue.kind.category), CueWord(cue.kind.category, line, lines[line].box))
    cands: list[_Cand] = []
    for ri, row in enumerate(rows):
        _emails(rows, ri, cands)
        _postal(rows, ri, config, cands)
        _addresses(rows, ri, cands)
        _messenger(rows, ri, config, cands)
        if sum(c in _DIGITS for c in row.text) >= 7:
            _phones(rows, ri, config, cands)
    findings: list[Finding] = []
    for cand in _resolve(cands):
        row = rows[cand.row]
        members = [li for li, (s, e) in zip(row.lines, row.spans, strict=True) if s < cand.end and cand.start < e]
        if not members:
            continue
        evidence = cand.evidence
        if len(members) > 1:
            evidence = [*evidence, "split_row"]
        score = min(min(max(lines[li].score, 0.0), 1.0) for li in members)
        confidence = round(max(0.0, min(1.0, cand.strength)) * (0.5 + 0.5 * score), 3)
        if confidence < config.min_confidence:
            continue
        box = lines[members[0]].box if len(members) == 1 else _union([lines[li].box for li in members])
        masked = mask(cand.shown, cand.entity)
        findings.append(Finding(cand.entity, confidence, box, masked, members[0], tuple(dict.fromkeys(evidence))))
    findings.sort(key=lambda f: (f.line, f.box[0], f.entity.value))
    return Recognized(tuple(findings), tuple(sorted(cues.values(), key=lambda c: (c.line, c.category))))


def _line_at(row: _Row, pos: int) -> int:
    """The line of a row holding text position `pos` (a separator counts with the next line)."""
    for li, (_, e) in zip(row.lines, row.spans, strict=True):
        if pos < e:
            return li
    return row.lines[-1]


# ---------------------------------------------------------------------------------------------
# Masking


def mask(text: str, entity: EntityType) -> str:
    """The form of a value that may be shown: enough to tell what kind of thing was found and
    roughly where, never enough to recover it ("090-****-**78", "j***@example.com",
    "〒1**-****", "東京都新宿区***", "@t***")."""
    text = _nfkc(text).strip()
    if entity is EntityType.PHONE:
        return _mask_phone(text)
    if entity is EntityType.EMAIL:
        local, at, domain = text.rpartition("@")
        if not at:
            return text[:1] + "***"
        return local[:1] + "***@" + domain.replace(" ", "")
    if entity is EntityType.POSTAL_CODE:
        return _mask_postal(text)
    if entity is EntityType.ADDRESS:
        return _mask_address(text)
    prefix = "@" if text.startswith("@") else ""
    return prefix + text[len(prefix) : len(prefix) + 1] + "***"


def _mask_phone(text: str) -> str:
    positions = [i for i, c in enumerate(text) if c in _DIGITS]
    keep: set[int] = set()
    # The last two digits show only while at least six stay hidden: a local 555-0156 shows none.
    if len(positions) >= 8:
        keep.update(positions[-2:])
    groups = list(_DIGIT_GROUP.finditer(text))
    # The country code, or a leading trunk group (090, 03), says only which network or city;
    # it is shown when at least six digits stay hidden.
    if groups and len(groups) >= 2:
        first = groups[0]
        is_cc = text[: first.start()].strip("( ") == "+" and len(first.group()) <= 3
        is_trunk = text[: first.start()].strip("( ") == "" and first.group().startswith("0") and len(first.group()) <= 4
        if (is_cc or is_trunk) and len(positions) - len(first.group()) - len(keep) >= 6:
            keep.update(range(first.start(), first.end()))
    return "".join("*" if c in _DIGITS and i not in keep else c for i, c in enumerate(text))


def _mask_postal(text: str) -> str:
    us = re.fullmatch(rf"(?P<state>{_US_STATES}),? (?P<zip>[0-9]{{5}}(?:-[0-9]{{4}})?)", text)
    if us is not None:
        code = us.group("zip")
        return us.group("state") + " " + code[0] + re.sub("[0-9]", "*", code[1:])
    out: list[str] = []
    shown = False
    for c in text:
        if c.isalnum() and not shown:
            out.append(c)
            shown = True
        elif c.isalnum():
            out.append("*")
        else:
            out.append(c)
    return "".join(out)


def _mask_address(text: str) -> str:
    pref = _JP_PREF_START.match(text)
    if pref is not None:
        muni = _JP_MUNI.match(text, pref.end())
        return text[: (muni or pref).end()] + "***"
    if re.search(f"[{_KANJI_KANA}]", text):
        city = _JP_MUNI.match(text)
        return (city.group() if city else "") + "***"
    words = []
    for word in text.split(" "):
        core = word.rstrip(".,")
        if core in _STREET_WORDS:
            words.append(word)
        else:
            words.append("".join("*" if c.isdigit() or (i > 0 and c.isalnum()) else c for i, c in enumerate(word)))
    return " ".join(words)
