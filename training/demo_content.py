"""Synthetic text for the demo images: personal data and ordinary (benign) text.

Every personal value is made up at random: names are random pairings of common given names and
surnames, phone numbers use random digits (US ones in the 555-01xx range reserved for fiction),
e-mail addresses use the reserved example.* domains, and street numbers are random. None of it
describes a real person. Each function returns the lines of one image and its language ("en"
or "ja"), so the renderer can pick a font that has the glyphs."""

from __future__ import annotations

import numpy as np

EN_GIVEN = (
    "James", "Mary", "John", "Linda", "Robert", "Susan", "Michael", "Karen", "David", "Emily",
    "Daniel", "Laura", "Kevin", "Olivia", "Brian", "Sophia", "Jason", "Chloe", "Ryan", "Grace",
)
EN_FAMILY = (
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Lewis", "Walker",
    "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Carter",
)
JA_FAMILY = (
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"), ("伊藤", "ito"),
    ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"), ("小林", "kobayashi"),
    ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"),
)
JA_GIVEN = (
    ("太郎", "taro"), ("花子", "hanako"), ("翔太", "shota"), ("結衣", "yui"), ("健一", "kenichi"),
    ("美咲", "misaki"), ("大輔", "daisuke"), ("さくら", "sakura"), ("直樹", "naoki"), ("陽菜", "hina"),
)
STREETS = ("Oak", "Maple", "Pine", "Cedar", "Elm", "Lake", "Hill", "Park", "Sunset", "River")
STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Drive", "Court")
CITIES = (
    ("Springfield", "IL"), ("Riverton", "WY"), ("Fairview", "OR"), ("Greenville", "SC"),
    ("Madison", "WI"), ("Georgetown", "TX"), ("Franklin", "TN"), ("Salem", "MA"),
)
JA_PLACES = (
    "東京都新宿区西新宿", "東京都渋谷区神南", "大阪府大阪市北区梅田", "京都府京都市中京区",
    "神奈川県横浜市中区", "愛知県名古屋市中村区", "福岡県福岡市博多区", "北海道札幌市中央区",
)
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.jp")

MENU_EN = (
    "Espresso", "Cappuccino", "Latte", "Green tea", "Orange juice", "Pancakes", "Club sandwich",
    "Caesar salad", "Tomato soup", "Cheesecake", "Fish and chips", "Veggie burger", "Lemonade",
)
MENU_JA = ("ラーメン", "うどん", "そば", "天ぷら定食", "カレーライス", "親子丼", "餃子", "緑茶", "焼き魚定食", "抹茶アイス")
MENU_TITLES_EN = ("MENU", "Lunch Specials", "Today's Menu", "Drinks", "Breakfast", "Desserts")
MENU_TITLES_JA = ("お品書き", "本日のランチ", "メニュー", "お飲み物", "日替わり定食")
SIGNS_EN = (
    "OPEN", "CLOSED", "EXIT", "NO PARKING", "WET FLOOR", "SALE", "WELCOME", "PUSH", "PULL",
    "STAFF ONLY", "KEEP LEFT", "FRESH BREAD", "PLEASE WAIT HERE", "ENTRANCE",
)
SIGNS_JA = ("営業中", "出口", "入口", "本日休業", "禁煙", "準備中", "いらっしゃいませ", "足元注意", "駐車禁止")
SAYINGS_EN = (
    "Actions speak louder than words", "Every cloud has a silver lining", "Better late than never",
    "Practice makes perfect", "Good things take time", "Stay curious", "Home sweet home",
    "Sunset at the beach", "Weekend hike with friends", "Our new kitchen!", "Best coffee in town",
    "Happy birthday!", "See you at the park", "Meeting moved to Thursday", "Rainy day again",
)
SAYINGS_JA = (
    "継続は力なり", "七転び八起き", "一期一会", "今日もいい天気", "週末は海へ", "新しいカフェに行きました",
    "桜がきれいです", "お誕生日おめでとう", "また明日", "ありがとうございました",
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
    local = str(
        _pick(rng, (f"{given}.{family}", f"{given[0]}{family}", f"{family}{_digits(rng, 2)}", f"{given}_{family}"))
    )
    return f"{local.lower()}@{_pick(rng, EXAMPLE_DOMAINS)}"


def address_en(rng: np.random.Generator) -> list[str]:
    city, state = _pick(rng, CITIES)  # type: ignore[misc]
    street = f"{int(rng.integers(10, 9999))} {_pick(rng, STREETS)} {_pick(rng, STREET_KINDS)}"
    return [street, f"{city}, {state} {_digits(rng, 5)}"]


def address_ja(rng: np.random.Generator) -> list[str]:
    block = f"{int(rng.integers(1, 9))}-{int(rng.integers(1, 30))}-{int(rng.integers(1, 20))}"
    return [f"〒{_digits(rng, 3)}-{_digits(rng, 4)}", f"{_pick(rng, JA_PLACES)}{block}"]


def personal_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines of one image that shows somebody's personal data."""
    if rng.random() < 0.35:
        (family, family_latin), (given, given_latin) = name_ja(rng)
        mail = email(rng, given_latin, family_latin)
        layouts = (
            [f"{family} {given}", f"TEL {phone_ja(rng)}", mail],
            [f"氏名: {family} {given}", f"電話: {phone_ja(rng)}", "住所:", *address_ja(rng)],
            [f"{family} {given}", *address_ja(rng)],
            ["連絡先", phone_ja(rng)],
            ["メール:", mail],
            [phone_ja(rng)],
        )
        return list(_pick(rng, layouts)), "ja"  # type: ignore[arg-type]
    given, family = name_en(rng)
    mail = email(rng, given, family)
    layouts = (
        [f"{given} {family}", phone_en(rng), mail],
        [f"Name: {given} {family}", f"Tel: {phone_en(rng)}", mail],
        [f"{given} {family}", *address_en(rng)],
        ["Call me at", phone_en(rng)],
        ["My email is", mail],
        [mail],
        [phone_en(rng)],
        [f"{given} {family}", *address_en(rng), phone_en(rng)],
    )
    return list(_pick(rng, layouts)), "en"  # type: ignore[arg-type]


def benign_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines of one image with ordinary text and no personal data: menus, signs, captions."""
    japanese = rng.random() < 0.35
    kind = int(rng.integers(3))
    if kind == 0:
        count = int(rng.integers(2, 6))
        if japanese:
            items = rng.choice(len(MENU_JA), count, replace=False)
            prices = [f"{int(rng.integers(3, 15)) * 50}円" for _ in items]
            lines = [str(_pick(rng, MENU_TITLES_JA))] + [f"{MENU_JA[i]}  {p}" for i, p in zip(items, prices)]
        else:
            items = rng.choice(len(MENU_EN), count, replace=False)
            lines = [str(_pick(rng, MENU_TITLES_EN))] + [
                f"{MENU_EN[i]}  {int(rng.integers(2, 15))}.{int(rng.integers(0, 20)) * 5:02d}" for i in items
            ]
    elif kind == 1:
        lines = [str(_pick(rng, SIGNS_JA if japanese else SIGNS_EN))]
    else:
        lines = [str(_pick(rng, SAYINGS_JA if japanese else SAYINGS_EN))]
    return lines, "ja" if japanese else "en"
