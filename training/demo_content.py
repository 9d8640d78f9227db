"""Synthetic text for the demo images: personal data and ordinary (benign) text.

Every personal value is made up at random: names are random pairings of common given names and
surnames, phone numbers use random digits (US ones in the 555-01xx range reserved for fiction),
e-mail addresses use the reserved example.* domains, and street numbers are random. None of it
describes a real person.

Every personal-data text carries a phone number, with names, e-mail and postal addresses
alongside; the benign text includes menus with short prices, so digits alone do not mark
personal data. Each function returns the lines of one image (at most three for personal data)
and its language ("en" or "ja"), so the renderer can pick a font that has the glyphs."""

from __future__ import annotations

import numpy as np

EN_GIVEN = (
    "James",
    "Mary",
    "John",
    "Linda",
    "Robert",
    "Susan",
    "Michael",
    "Karen",
    "David",
    "Emily",
    "Daniel",
    "Laura",
    "Kevin",
    "Olivia",
    "Brian",
    "Sophia",
    "Jason",
    "Chloe",
    "Ryan",
    "Grace",
)
EN_FAMILY = (
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Miller",
    "Wilson",
    "Moore",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Carter",
)
JA_FAMILY = (
    ("佐藤", "sato"),
    ("鈴木", "suzuki"),
    ("高橋", "takahashi"),
    ("田中", "tanaka"),
    ("伊藤", "ito"),
    ("渡辺", "watanabe"),
    ("山本", "yamamoto"),
    ("中村", "nakamura"),
    ("小林", "kobayashi"),
    ("加藤", "kato"),
    ("吉田", "yoshida"),
    ("山田", "yamada"),
)
JA_GIVEN = (
    ("太郎", "taro"),
    ("花子", "hanako"),
    ("翔太", "shota"),
    ("結衣", "yui"),
    ("健一", "kenichi"),
    ("美咲", "misaki"),
    ("大輔", "daisuke"),
    ("さくら", "sakura"),
    ("直樹", "naoki"),
    ("陽菜", "hina"),
)
STREETS = ("Oak", "Maple", "Pine", "Cedar", "Elm", "Lake", "Hill", "Park", "Sunset", "River")
STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Drive", "Court")
CITIES = (
    ("Springfield", "IL"),
    ("Riverton", "WY"),
    ("Fairview", "OR"),
    ("Greenville", "SC"),
    ("Madison", "WI"),
    ("Georgetown", "TX"),
    ("Franklin", "TN"),
    ("Salem", "MA"),
)
JA_PLACES = (
    "東京都新宿区西新宿",
    "東京都渋谷区神南",
    "大阪府大阪市北区梅田",
    "京都府京都市中京区",
    "神奈川県横浜市中区",
    "愛知県名古屋市中村区",
    "福岡県福岡市博多区",
    "北海道札幌市中央区",
)
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.jp")

MENU_EN = (
    "Espresso",
    "Cappuccino",
    "Latte",
    "Green tea",
    "Orange juice",
    "Pancakes",
    "Club sandwich",
    "Caesar salad",
    "Tomato soup",
    "Cheesecake",
    "Fish and chips",
    "Veggie burger",
    "Lemonade",
)
MENU_JA = (
    "ラーメン",
    "うどん",
    "そば",
    "天ぷら定食",
    "カレーライス",
    "親子丼",
    "餃子",
    "緑茶",
    "焼き魚定食",
    "抹茶アイス",
)
MENU_TITLES_EN = ("MENU", "Lunch Specials", "Today's Menu", "Drinks", "Breakfast", "Desserts")
MENU_TITLES_JA = ("お品書き", "本日のランチ", "メニュー", "お飲み物", "日替わり定食")
SIGNS_EN = (
    "OPEN",
    "CLOSED",
    "EXIT",
    "NO PARKING",
    "WET FLOOR",
    "SALE",
    "WELCOME",
    "PUSH",
    "PULL",
    "STAFF ONLY",
    "KEEP LEFT",
    "FRESH BREAD",
    "PLEASE WAIT HERE",
    "ENTRANCE",
)
SIGNS_JA = (
    "営業中",
    "出口",
    "入口",
    "本日休業",
    "禁煙",
    "準備中",
    "いらっしゃいませ",
    "足元注意",
    "駐車禁止",
)
SAYINGS_EN = (
    "Actions speak louder than words",
    "Every cloud has a silver lining",
    "Better late than never",
    "Practice makes perfect",
    "Good things take time",
    "Stay curious",
    "Home sweet home",
    "Sunset at the beach",
    "Weekend hike with friends",
    "Our new kitchen!",
    "Best coffee in town",
    "Happy birthday!",
    "See you at the park",
    "Meeting moved to Thursday",
    "Rainy day again",
)
SAYINGS_JA = (
    "継続は力なり",
    "七転び八起き",
    "一期一会",
    "今日もいい天気",
    "週末は海へ",
    "新しいカフェに行きました",
    "桜がきれいです",
    "お誕生日おめでとう",
    "また明日",
    "ありがとうございました",
)
PROSE_EN = (
    "The market opens early on weekends.",
    "Fresh bread is baked every morning.",
    "The trail follows the river for two miles.",
    "Bring a warm jacket in the evening.",
    "Our garden is full of tomatoes this year.",
    "The museum is free on the first Sunday.",
    "Rain is expected later in the week.",
    "The library has a new reading room.",
    "We watched the boats come into the harbour.",
    "The festival ends with fireworks.",
)
PROSE_JA = (
    "週末は朝早くから市場が開きます。",
    "毎朝パンを焼いています。",
    "川沿いの道を歩きました。",
    "夜は少し寒くなります。",
    "今年は庭のトマトがよく育ちました。",
    "美術館は第一日曜日が無料です。",
    "来週は雨が続くようです。",
    "図書館に新しい読書室ができました。",
)


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def phone_en(rng: np.random.Generator) -> str:
    line = f"01{_digits(rng, 2)}"
    area = _digits(rng, 3)
    return str(_pick(rng, (f"({area}) 555-{line}", f"{area}-555-{line}", f"+1 {area} 555 {line}")))


def phone_ja(rng: np.random.Generator) -> str:
    mobile = f"0{_pick(rng, ('70', '80', '90'))}-{_digits(rng, 4)}-{_digits(rng, 4)}"
    land = f"0{_digits(rng, 1)}-{_digits(rng, 4)}-{_digits(rng, 4)}"
    return str(_pick(rng, (mobile, land, "+81 " + mobile[1:])))


def name_en(rng: np.random.Generator) -> tuple[str, str]:
    return str(_pick(rng, EN_GIVEN)), str(_pick(rng, EN_FAMILY))


def name_ja(rng: np.random.Generator) -> tuple[tuple[str, str], tuple[str, str]]:
    return _pick(rng, JA_FAMILY), _pick(rng, JA_GIVEN)  # type: ignore[return-value]


def email(rng: np.random.Generator, given: str, family: str) -> str:
    forms = (f"{given}.{family}", f"{given[0]}{family}", f"{family}{_digits(rng, 2)}", f"{given}_{family}")
    local = str(_pick(rng, forms))
    return f"{local.lower()}@{_pick(rng, EXAMPLE_DOMAINS)}"


def address_en(rng: np.random.Generator) -> list[str]:
    city, state = _pick(rng, CITIES)  # type: ignore[misc]
    street = f"{int(rng.integers(10, 9999))} {_pick(rng, STREETS)} {_pick(rng, STREET_KINDS)}"
    return [street, f"{city}, {state} {_digits(rng, 5)}"]


def address_ja(rng: np.random.Generator) -> list[str]:
    block = f"{int(rng.integers(1, 9))}-{int(rng.integers(1, 30))}-{int(rng.integers(1, 20))}"
    return [f"〒{_digits(rng, 3)}-{_digits(rng, 4)}", f"{_pick(rng, JA_PLACES)}{block}"]


def personal_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines (at most three) of one image that shows somebody's personal data."""
    if rng.random() < 0.35:
        (family, family_latin), (given, given_latin) = name_ja(rng)
        name = f"{family} {given}"
        mail = email(rng, given_latin, family_latin)
        phone = phone_ja(rng)
        postcode, _ = address_ja(rng)
        layouts = (
            [name, phone],
            [name, f"TEL {phone}"],
            [postcode, phone],
            ["連絡先", phone],
            ["電話番号", phone],
            [phone],
            [mail, phone],
            [name, phone, mail],
        )
        return list(_pick(rng, layouts)), "ja"  # type: ignore[arg-type]
    given, family = name_en(rng)
    name = f"{given} {family}"
    mail = email(rng, given, family)
    phone = phone_en(rng)
    street, _ = address_en(rng)
    layouts = (
        [name, phone],
        [f"Tel: {phone}"],
        [phone],
        ["Call me", phone],
        ["Phone", phone],
        [mail, phone],
        [name, phone, mail],
        [street, phone],
    )
    return list(_pick(rng, layouts)), "en"  # type: ignore[arg-type]


def _price(rng: np.random.Generator, japanese: bool) -> str:
    if japanese:
        return f"{int(rng.integers(3, 15)) * 50}円"
    return f"{int(rng.integers(2, 15))}.{int(rng.integers(0, 20)) * 5:02d}"


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap; Japanese, which has no spaces, is cut every `width` characters."""
    if " " not in text:
        return [text[i : i + width] for i in range(0, len(text), width)]
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def benign_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines of one image with ordinary text and no personal data: menus (half of them with
    prices, digits a personal-data detector must not fire on alone), signs, captions, prose."""
    japanese = rng.random() < 0.35
    kind = rng.random()
    if kind < 0.35:
        count = int(rng.integers(3, 7))
        priced = rng.random() < 0.5
        menu, titles = (MENU_JA, MENU_TITLES_JA) if japanese else (MENU_EN, MENU_TITLES_EN)
        lines = [str(_pick(rng, titles))]
        for i in rng.choice(len(menu), count, replace=False):
            lines.append(f"{menu[i]}  {_price(rng, japanese)}" if priced else menu[i])
    elif kind < 0.55:
        lines = [str(_pick(rng, SIGNS_JA if japanese else SIGNS_EN))]
    elif kind < 0.8:
        lines = [str(_pick(rng, SAYINGS_JA if japanese else SAYINGS_EN))]
    else:
        prose = PROSE_JA if japanese else PROSE_EN
        picked = [prose[i] for i in rng.choice(len(prose), int(rng.integers(2, 5)), replace=False)]
        text = ("" if japanese else " ").join(picked)
        lines = _wrap(text, int(rng.integers(10, 16)) if japanese else int(rng.integers(22, 36)))
    return lines, "ja" if japanese else "en"
