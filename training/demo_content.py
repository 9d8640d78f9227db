"""Synthetic text for the demo images: personal data, and ordinary text that is not personal data.

Every personal value is made up at random. Names are random pairings of common given names and
surnames; US phone numbers use the 555-01xx range reserved for fiction; Japanese ones are random
digits in the mobile (070/080/090), Tokyo (03), Osaka (06) and other area-code forms; e-mail
addresses use the reserved example.* domains; postal addresses pair real prefecture, city and
district names (or US city names) with random block, street and postal-code numbers; messenger
IDs and @handles are random name fragments with random digits. None of it describes a real
person. Japanese values are written with full-width digits now and then, as people type them.

Text comes as `Line`s: the string and the entity types it carries (PHONE, EMAIL, POSTAL_CODE,
ADDRESS, MESSENGER_ID), so the renderer can record exactly which personal data it drew. A name
alone is not an entity: personal_info here means contact data written in the picture.

The ordinary text is chosen to look like personal data without being it: menus and receipts
full of prices, item codes, dates and times; timetables; product codes (JAN, ISBN, lot
numbers); scores; calendars; opening hours; chats that mention times and amounts; empty forms
whose field labels say 電話番号 or Phone with nothing filled in. A detector that fires on digits,
hyphens or field labels alone is wrong on these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

PHONE = "PHONE"
EMAIL = "EMAIL"
POSTAL_CODE = "POSTAL_CODE"
ADDRESS = "ADDRESS"
MESSENGER_ID = "MESSENGER_ID"
ENTITY_TYPES = (PHONE, EMAIL, POSTAL_CODE, ADDRESS, MESSENGER_ID)

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """One line of text and the personal-data entity types in it (empty for ordinary text)."""

    text: str
    entities: tuple[str, ...] = ()


def as_line(item: Line | str) -> Line:
    return item if isinstance(item, Line) else Line(item)


def is_japanese(text: str) -> bool:
    return any(ord(ch) >= 0x3000 for ch in text)


EN_GIVEN = (
    "James", "Mary", "John", "Linda", "Robert", "Susan", "Michael", "Karen", "David", "Emily",
    "Daniel", "Laura", "Kevin", "Olivia", "Brian", "Sophia", "Jason", "Chloe", "Ryan", "Grace",
    "Ethan", "Hannah", "Lucas", "Megan", "Noah", "Rachel", "Owen", "Julia", "Adam", "Nora",
)  # fmt: skip
EN_FAMILY = (
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Lewis", "Walker",
    "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Carter",
    "Parker", "Evans", "Turner", "Collins", "Murphy", "Price", "Bennett", "Foster", "Hayes", "Reed",
)  # fmt: skip
JA_FAMILY = (
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"), ("伊藤", "ito"),
    ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"), ("小林", "kobayashi"),
    ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"), ("松本", "matsumoto"), ("井上", "inoue"),
    ("木村", "kimura"), ("清水", "shimizu"), ("山口", "yamaguchi"), ("森", "mori"), ("池田", "ikeda"),
    ("橋本", "hashimoto"),
)  # fmt: skip
JA_GIVEN = (
    ("太郎", "taro"), ("花子", "hanako"), ("翔太", "shota"), ("結衣", "yui"), ("健一", "kenichi"),
    ("美咲", "misaki"), ("大輔", "daisuke"), ("さくら", "sakura"), ("直樹", "naoki"), ("陽菜", "hina"),
    ("拓也", "takuya"), ("彩", "aya"), ("誠", "makoto"), ("優子", "yuko"), ("亮", "ryo"),
    ("真由美", "mayumi"), ("蓮", "ren"), ("葵", "aoi"), ("悠斗", "yuto"), ("恵", "megumi"),
)  # fmt: skip
STREETS = (
    "Oak", "Maple", "Pine", "Cedar", "Elm", "Lake", "Hill", "Park", "Sunset", "River", "Willow",
    "Chestnut", "Spring", "Meadow", "Harbor", "Ridge", "Mill", "Church", "Valley", "Forest",
)  # fmt: skip
STREET_KINDS = ("Street", "St.", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Dr", "Court", "Blvd")
UNITS = ("Apt 4B", "Apt 12", "Suite 210", "Unit 7", "#305", "Apt 2C", "Suite 1400", "Fl 3")
CITIES = (
    ("Springfield", "IL"), ("Riverton", "WY"), ("Fairview", "OR"), ("Greenville", "SC"),
    ("Madison", "WI"), ("Georgetown", "TX"), ("Franklin", "TN"), ("Salem", "MA"), ("Portland", "ME"),
    ("Arlington", "VA"), ("Clinton", "IA"), ("Dayton", "OH"), ("Burlington", "VT"), ("Aurora", "CO"),
    ("Bristol", "CT"), ("Dover", "DE"), ("Lexington", "KY"), ("Oxford", "MS"),
)  # fmt: skip
# Real prefecture, city and district names; the block numbers that follow them are random.
JA_PLACES = (
    ("東京都", "新宿区", "西新宿"), ("東京都", "渋谷区", "神南"), ("東京都", "世田谷区", "三軒茶屋"),
    ("東京都", "練馬区", "豊玉北"), ("東京都", "江東区", "豊洲"), ("東京都", "八王子市", "旭町"),
    ("大阪府", "大阪市北区", "梅田"), ("大阪府", "堺市堺区", "南瓦町"), ("大阪府", "吹田市", "江坂町"),
    ("京都府", "京都市中京区", "烏丸通"), ("神奈川県", "横浜市中区", "山下町"),
    ("神奈川県", "川崎市中原区", "小杉町"), ("愛知県", "名古屋市中村区", "名駅"),
    ("福岡県", "福岡市博多区", "博多駅前"), ("北海道", "札幌市中央区", "北一条西"),
    ("宮城県", "仙台市青葉区", "一番町"), ("広島県", "広島市中区", "紙屋町"),
    ("兵庫県", "神戸市中央区", "三宮町"), ("埼玉県", "さいたま市浦和区", "高砂"),
    ("千葉県", "千葉市中央区", "富士見"), ("静岡県", "静岡市葵区", "呉服町"),
    ("新潟県", "新潟市中央区", "万代"), ("沖縄県", "那覇市", "久茂地"), ("長野県", "松本市", "中央"),
)  # fmt: skip
JA_BUILDINGS = ("ハイツ", "マンション", "コーポ", "レジデンス", "荘", "ビル", "パレス", "メゾン")
JA_BUILDING_NAMES = ("さくら", "グリーン", "サンライズ", "ひまわり", "青葉", "富士見", "リバーサイド", "若葉")
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.jp", "mail.example.com")
HANDLE_WORDS = (
    "sunny", "coffee", "photo", "daily", "travel", "cat", "music", "blue", "happy", "night",
    "moon", "star", "green", "tokyo", "osaka", "art", "book", "run", "food", "life",
)  # fmt: skip
COMPANIES_EN = (
    "Northwind Design", "Bluebird Logistics", "Maple Leaf Consulting", "Sunrise Bakery",
    "Harbor Point Realty", "Cedar & Stone", "Brightpath Studio", "Greenfield Landscaping",
    "Atlas Print Co.", "Silverline Motors", "Blue Fern Dental", "Orchard Lane Florist",
)  # fmt: skip
TITLES_EN = (
    "Sales Manager", "Graphic Designer", "Account Executive", "Owner", "Project Lead",
    "Marketing Director", "Photographer", "Real Estate Agent", "Consultant", "Office Manager",
)  # fmt: skip
COMPANIES_JA = (
    "株式会社さくらデザイン", "山田商事株式会社", "有限会社ひかり工房", "株式会社みどり不動産",
    "青空印刷株式会社", "株式会社はなまる企画", "つばさ運輸株式会社", "株式会社こもれび",
)  # fmt: skip
TITLES_JA = ("営業部 課長", "代表取締役", "デザイナー", "営業担当", "総務部", "店長", "企画部 主任", "カメラマン")

FULL_WIDTH = str.maketrans("0123456789-()", "０１２３４５６７８９－（）")


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


_pick = pick


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def full_width(text: str) -> str:
    return text.translate(FULL_WIDTH)


# ---------------------------------------------------------------------------------------------
# Personal values


def phone_en(rng: np.random.Generator) -> str:
    line = f"01{_digits(rng, 2)}"
    area = f"{int(rng.integers(2, 10))}{_digits(rng, 2)}"
    forms = (
        f"({area}) 555-{line}",
        f"{area}-555-{line}",
        f"+1 {area} 555 {line}",
        f"{area}.555.{line}",
        f"1-{area}-555-{line}",
        f"+1 ({area}) 555-{line}",
    )
    return pick(rng, forms)


def phone_ja(rng: np.random.Generator) -> str:
    mobile = f"0{pick(rng, ('70', '80', '90'))}-{_digits(rng, 4)}-{_digits(rng, 4)}"
    city = f"0{pick(rng, ('3', '6'))}-{_digits(rng, 4)}-{_digits(rng, 4)}"
    area = f"0{pick(rng, ('45', '52', '11', '92', '75', '78', '22', '82'))}-{_digits(rng, 3)}-{_digits(rng, 4)}"
    forms = (
        mobile,
        mobile,
        city,
        area,
        mobile.replace("-", ""),
        f"0{pick(rng, ('3', '6'))}({_digits(rng, 4)}){_digits(rng, 4)}",
        "+81 " + mobile[1:],
        "+81-" + city[1:],
    )
    number = pick(rng, forms)
    return full_width(number) if chance(rng, 0.15) else number


def name_en(rng: np.random.Generator) -> tuple[str, str]:
    return pick(rng, EN_GIVEN), pick(rng, EN_FAMILY)


def name_ja(rng: np.random.Generator) -> tuple[tuple[str, str], tuple[str, str]]:
    return pick(rng, JA_FAMILY), pick(rng, JA_GIVEN)


def email(rng: np.random.Generator, given: str, family: str) -> str:
    forms = (
        f"{given}.{family}",
        f"{given[0]}{family}",
        f"{family}{_digits(rng, 2)}",
        f"{given}_{family}",
        f"{given}{_digits(rng, 3)}",
        f"{family}.{given[0]}",
    )
    return f"{pick(rng, forms).lower()}@{pick(rng, EXAMPLE_DOMAINS)}"


def handle(rng: np.random.Generator, given: str = "", family: str = "") -> str:
    """A made-up messenger ID or social handle (without the '@')."""
    word = pick(rng, HANDLE_WORDS)
    base = given.lower() or word
    forms = (
        f"{base}_{_digits(rng, 4)}",
        f"{base}.{(family or word).lower()}{_digits(rng, 2)}",
        f"{word}_{base}{_digits(rng, 2)}",
        f"{base[:1]}{(family or word).lower()}{_digits(rng, 3)}",
        f"{word}{base}_{_digits(rng, 2)}",
    )
    return pick(rng, forms)


def messenger_line(rng: np.random.Generator, given: str = "", family: str = "", japanese: bool = False) -> str:
    h = handle(rng, given, family)
    forms_en = (
        f"LINE ID: {h}",
        f"LINE: {h}",
        f"IG @{h}",
        f"Instagram: @{h}",
        f"X: @{h}",
        f"Telegram @{h}",
        f"WeChat: {h}",
        f"KakaoTalk: {h}",
        f"Discord: {h}",
        f"@{h}",
    )
    forms_ja = (f"LINE ID：{h}", f"ライン: {h}", f"LINEのID {h}", f"インスタ @{h}", f"ID: {h}")
    return pick(rng, forms_ja if japanese else forms_en)


def address_en(rng: np.random.Generator) -> list[str]:
    """[street (with a unit now and then), "City, ST 12345"]."""
    city, state = pick(rng, CITIES)
    street = f"{int(rng.integers(10, 9999))} {pick(rng, STREETS)} {pick(rng, STREET_KINDS)}"
    if chance(rng, 0.3):
        street += f", {pick(rng, UNITS)}"
    return [street, f"{city}, {state} {_digits(rng, 5)}"]


def address_ja(rng: np.random.Generator) -> list[str]:
    """[〒postcode, prefecture + city + district + block (+ building)]."""
    pref, city, town = pick(rng, JA_PLACES)
    a, b, c = int(rng.integers(1, 9)), int(rng.integers(1, 30)), int(rng.integers(1, 25))
    block = pick(rng, (f"{a}-{b}-{c}", f"{a}丁目{b}番{c}号", f"{a}-{b}", f"{a}丁目{b}-{c}"))
    wide = chance(rng, 0.2)
    if wide:
        block = full_width(block)
    place = f"{pref}{city}{town}{block}" if chance(rng, 0.8) else f"{city}{town}{block}"
    if chance(rng, 0.35):
        room = f"{int(rng.integers(1, 12))}0{int(rng.integers(1, 9))}"
        place += f" {pick(rng, JA_BUILDING_NAMES)}{pick(rng, JA_BUILDINGS)}{full_width(room) if wide else room}号室"
    code = f"{_digits(rng, 3)}-{_digits(rng, 4)}"
    return [f"〒{full_width(code) if wide else code}", place]


@dataclass(frozen=True)
class Person:
    """One made-up person's contact data, in the form a kind of image shows it."""

    japanese: bool
    name: str
    name_latin: str
    given_latin: str
    family_latin: str
    phone: str
    mobile: str
    email: str
    address: tuple[str, str]  # street / 〒code, city line / place
    handle: str
    company: str
    title: str

    def phone_line(self, rng: np.random.Generator, mobile: bool = False) -> Line:
        number = self.mobile if mobile else self.phone
        if self.japanese:
            label = pick(rng, ("TEL ", "TEL：", "電話 ", "電話番号 ", "携帯 ", "℡ ", "Tel. ", ""))
        else:
            label = pick(rng, ("Tel: ", "Phone: ", "Ph ", "Mobile: ", "Cell ", "T ", "Call ", "Tel. ", ""))
        return Line(label + number, (PHONE,))

    def email_line(self, rng: np.random.Generator) -> Line:
        label = pick(
            rng, (("E-mail：", "メール ", "Mail: ", "") if self.japanese else ("Email: ", "E ", "E-mail ", ""))
        )
        return Line(label + self.email, (EMAIL,))

    def address_lines(self, rng: np.random.Generator, one_line: bool = False) -> list[Line]:
        first, second = self.address
        if self.japanese:
            if one_line:
                return [Line(f"{first} {second}", (POSTAL_CODE, ADDRESS))]
            return [Line(first, (POSTAL_CODE,)), Line(second, (ADDRESS,))]
        if one_line:
            return [Line(f"{first}, {second}", (ADDRESS, POSTAL_CODE))]
        return [Line(first, (ADDRESS,)), Line(second, (ADDRESS, POSTAL_CODE))]

    def messenger(self, rng: np.random.Generator) -> Line:
        return Line(messenger_line(rng, self.given_latin, self.family_latin, self.japanese), (MESSENGER_ID,))


def person(rng: np.random.Generator, japanese: bool) -> Person:
    if japanese:
        (family, family_latin), (given, given_latin) = name_ja(rng)
        name = f"{family} {given}" if chance(rng, 0.6) else f"{family}{given}"
        phone, mobile = phone_ja(rng), phone_ja(rng)
        address = address_ja(rng)
        company, title = pick(rng, COMPANIES_JA), pick(rng, TITLES_JA)
    else:
        given_latin, family_latin = name_en(rng)
        name = f"{given_latin} {family_latin}"
        phone, mobile = phone_en(rng), phone_en(rng)
        address = address_en(rng)
        company, title = pick(rng, COMPANIES_EN), pick(rng, TITLES_EN)
    return Person(
        japanese=japanese,
        name=name,
        name_latin=f"{given_latin.title()} {family_latin.title()}",
        given_latin=given_latin,
        family_latin=family_latin,
        phone=phone,
        mobile=mobile,
        email=email(rng, given_latin, family_latin),
        address=(address[0], address[1]),
        handle=handle(rng, given_latin, family_latin),
        company=company,
        title=title,
    )


def contact_lines(rng: np.random.Generator, who: Person, count: int) -> list[Line]:
    """`count` (or a few more, for two-line addresses) lines of contact data; at least one."""
    options = ["phone", "email", "address", "mobile", "messenger"]
    weights = np.array([0.34, 0.24, 0.2, 0.12, 0.1])
    chosen = rng.choice(len(options), size=min(max(1, count), len(options)), replace=False, p=weights)
    lines: list[Line] = []
    for i in sorted(chosen):
        kind = options[i]
        if kind == "phone":
            lines.append(who.phone_line(rng))
        elif kind == "mobile":
            lines.append(who.phone_line(rng, mobile=True))
        elif kind == "email":
            lines.append(who.email_line(rng))
        elif kind == "address":
            lines.extend(who.address_lines(rng, one_line=chance(rng, 0.3)))
        else:
            lines.append(who.messenger(rng))
    return lines


def personal_lines(rng: np.random.Generator) -> tuple[list[Line], str]:
    """One to three lines of bare personal data, and their language ("en" or "ja")."""
    japanese = chance(rng, 0.4)
    who = person(rng, japanese)
    first = pick(rng, (("連絡先", "電話番号", "お問い合わせ", "住所") if japanese else ("Call me", "Contact", "Phone")))
    layouts = (
        [Line(who.name), who.phone_line(rng)],
        [who.phone_line(rng)],
        [Line(first), who.phone_line(rng)],
        [who.email_line(rng), who.phone_line(rng)],
        [Line(who.name), who.phone_line(rng), who.email_line(rng)],
        [Line(who.name), *who.address_lines(rng)],
        [*who.address_lines(rng)],
        [who.messenger(rng)],
        [Line(who.name), who.messenger(rng)],
        [who.email_line(rng)],
    )
    return list(pick(rng, layouts)), "ja" if japanese else "en"


def personal_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines (at most three) of one image that shows somebody's personal data."""
    lines, lang = personal_lines(rng)
    return [line.text for line in lines], lang


def personal_sentence(rng: np.random.Generator, who: Person) -> Line:
    """A chat message or bio sentence that carries one piece of contact data."""
    j = who.japanese
    what = pick(rng, ("phone", "phone", "email", "address", "messenger"))
    forms: tuple[str, ...]
    if what == "phone":
        forms = (
            ("電話番号は{}です", "{}に電話して", "携帯 {} です", "連絡は{}まで", "番号変わりました {}")
            if j
            else ("My number is {}", "call me at {}", "Text me: {}", "new number {}", "Reach me on {}")
        )
        return Line(pick(rng, forms).format(who.mobile), (PHONE,))
    if what == "email":
        forms = (
            ("メールは{}です", "{}に送ってください", "アドレス {}")
            if j
            else ("Email me at {}", "my email is {}", "send it to {}", "mail: {}")
        )
        return Line(pick(rng, forms).format(who.email), (EMAIL,))
    if what == "address":
        first, second = who.address
        if j:
            return Line(
                pick(rng, ("住所は{}です", "送り先: {}", "{}に住んでます")).format(f"{first} {second}"),
                (POSTAL_CODE, ADDRESS),
            )
        return Line(
            pick(rng, ("I'm at {}", "Address: {}", "ship it to {}")).format(f"{first}, {second}"),
            (ADDRESS, POSTAL_CODE),
        )
    forms = (
        ("LINEのIDは{}です", "ID {} で追加して", "LINE: {}")
        if j
        else ("add me on LINE: {}", "my IG is @{}", "DM me @{}", "Telegram: @{}")
    )
    return Line(pick(rng, forms).format(who.handle), (MESSENGER_ID,))


# ---------------------------------------------------------------------------------------------
# Ordinary text

MENU_EN = (
    "Espresso", "Cappuccino", "Latte", "Green tea", "Orange juice", "Pancakes", "Club sandwich",
    "Caesar salad", "Tomato soup", "Cheesecake", "Fish and chips", "Veggie burger", "Lemonade",
    "Iced coffee", "Croissant", "Bagel", "Margherita pizza", "Carbonara", "Chicken wings",
    "French fries", "Apple pie", "Hot chocolate", "Mango smoothie", "Steak frites", "Nachos",
)  # fmt: skip
MENU_JA = (
    "ラーメン", "うどん", "そば", "天ぷら定食", "カレーライス", "親子丼", "餃子", "緑茶",
    "焼き魚定食", "抹茶アイス", "唐揚げ定食", "牛丼", "味噌汁", "ほうじ茶", "オムライス",
    "ハンバーグ", "焼きそば", "かつ丼", "生ビール", "枝豆", "冷奴", "コーヒー", "ケーキセット",
)  # fmt: skip
MENU_TITLES_EN = ("MENU", "Lunch Specials", "Today's Menu", "Drinks", "Breakfast", "Desserts", "Happy Hour")
MENU_TITLES_JA = ("お品書き", "本日のランチ", "メニュー", "お飲み物", "日替わり定食", "おすすめ")
SIGNS_EN = (
    "OPEN", "CLOSED", "EXIT", "NO PARKING", "WET FLOOR", "SALE", "WELCOME", "PUSH", "PULL",
    "STAFF ONLY", "KEEP LEFT", "FRESH BREAD", "PLEASE WAIT HERE", "ENTRANCE", "RESTROOMS",
    "NO SMOKING", "CAUTION", "ONE WAY", "STOP", "BIKE LANE", "QUIET PLEASE", "FREE WI-FI",
)  # fmt: skip
SIGNS_JA = (
    "営業中", "出口", "入口", "本日休業", "禁煙", "準備中", "いらっしゃいませ", "足元注意",
    "駐車禁止", "立入禁止", "お手洗い", "非常口", "関係者以外立入禁止", "一方通行", "止まれ",
)  # fmt: skip
SAYINGS_EN = (
    "Actions speak louder than words", "Every cloud has a silver lining", "Better late than never",
    "Practice makes perfect", "Good things take time", "Stay curious", "Home sweet home",
    "Sunset at the beach", "Weekend hike with friends", "Our new kitchen!", "Best coffee in town",
    "Happy birthday!", "See you at the park", "Meeting moved to Thursday", "Rainy day again",
)  # fmt: skip
SAYINGS_JA = (
    "継続は力なり", "七転び八起き", "一期一会", "今日もいい天気", "週末は海へ",
    "新しいカフェに行きました", "桜がきれいです", "お誕生日おめでとう", "また明日", "ありがとうございました",
)  # fmt: skip
PROSE_EN = (
    "The market opens early on weekends.", "Fresh bread is baked every morning.",
    "The trail follows the river for two miles.", "Bring a warm jacket in the evening.",
    "Our garden is full of tomatoes this year.", "The museum is free on the first Sunday.",
    "Rain is expected later in the week.", "The library has a new reading room.",
    "We watched the boats come into the harbour.", "The festival ends with fireworks.",
)  # fmt: skip
PROSE_JA = (
    "週末は朝早くから市場が開きます。", "毎朝パンを焼いています。", "川沿いの道を歩きました。",
    "夜は少し寒くなります。", "今年は庭のトマトがよく育ちました。", "美術館は第一日曜日が無料です。",
    "来週は雨が続くようです。", "図書館に新しい読書室ができました。",
)  # fmt: skip
CHAT_EN = (
    "hey! are you coming tonight?", "running 10 min late sorry", "see you at 7:30", "lol yes",
    "did you see the game?", "3-1, what a match", "can you grab milk on the way", "sure thing",
    "the train is delayed again", "ok np", "what time is the movie?", "starts at 8:45",
    "it was 2,400 yen each", "thanks!!", "happy birthday!!", "meeting moved to 3pm",
    "I'll bring the snacks", "room is booked for Friday", "how was the trip?", "so good, pics later",
    "can't wait", "good night", "haha true", "bring an umbrella", "tickets are 15 dollars",
    "I'm at the station", "we need 4 more chairs", "order #4471 arrived", "pizza tonight?",
)  # fmt: skip
CHAT_JA = (
    "今どこ？", "10分くらい遅れます", "7時半に駅で", "了解です", "ありがとう！", "おつかれさま",
    "明日の会議は3時からです", "電車が遅れてる", "いま向かってます", "楽しかったね",
    "写真あとで送るね", "お誕生日おめでとう！", "了解〜", "ランチどこにする？", "駅前のカフェは？",
    "チケット2枚取れたよ", "1人2500円でした", "雨降ってきた", "おやすみなさい", "また来週ね",
    "週末ひま？", "いいね！", "20時に予約しました", "傘持ってきて", "よろしくお願いします",
)  # fmt: skip
CHAT_NAMES_EN = ("Mom", "Alex", "Team Lunch", "Sam", "Jordan", "Book Club", "Dad", "Chris", "Family")
CHAT_NAMES_JA = ("お母さん", "ゆうき", "サークル", "さとし", "バイト仲間", "家族", "みさき", "部活")


def _price(rng: np.random.Generator, japanese: bool) -> str:
    if japanese:
        return pick(rng, ("{}円", "¥{}", "{}")).format(f"{int(rng.integers(3, 40)) * 50:,}")
    return pick(rng, ("{}", "${}")).format(f"{int(rng.integers(2, 30))}.{int(rng.integers(0, 20)) * 5:02d}")


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


def _lines(texts: Sequence[str]) -> list[Line]:
    return [Line(t) for t in texts]


def menu(rng: np.random.Generator, japanese: bool) -> list[Line]:
    items, titles = (MENU_JA, MENU_TITLES_JA) if japanese else (MENU_EN, MENU_TITLES_EN)
    count = int(rng.integers(3, 9))
    priced = chance(rng, 0.75)
    lines = [pick(rng, titles)]
    for i in rng.choice(len(items), count, replace=False):
        lines.append(f"{items[i]}  {_price(rng, japanese)}" if priced else items[i])
    if chance(rng, 0.3):
        lines.append(
            pick(
                rng,
                ("税込", "ご飯大盛り無料", "11:00〜14:00")
                if japanese
                else ("Tax included", "Served 11am-3pm", "Refills free"),
            )
        )
    return _lines(lines)


def date_text(rng: np.random.Generator, japanese: bool) -> str:
    y, m, d = int(rng.integers(2019, 2027)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    if japanese:
        return pick(rng, (f"{y}年{m}月{d}日", f"{y}/{m:02d}/{d:02d}", f"令和{y - 2018}年{m}月{d}日"))
    return pick(rng, (f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}"))


def time_text(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(6, 24)):02d}:{int(rng.integers(0, 60)):02d}"


def receipt(rng: np.random.Generator, japanese: bool) -> list[Line]:
    """A till receipt: shop name, date, items with codes, totals; no address, no phone."""
    items = MENU_JA if japanese else MENU_EN
    shop = pick(
        rng,
        ("スーパーみどり", "カフェ ルナ", "ベーカリー麦", "ドラッグ ひかり")
        if japanese
        else ("GROCERY MART", "CAFE LUNA", "CORNER DELI", "BOOK NOOK", "FRESH MARKET"),
    )
    lines = [
        shop,
        pick(rng, ("領収書", "レシート", "お買上げ明細"))
        if japanese
        else pick(rng, ("RECEIPT", "SALES RECEIPT", "THANK YOU")),
    ]
    lines.append(f"{date_text(rng, japanese)} {time_text(rng)}")
    lines.append(
        f"{'レジ' if japanese else 'Reg'} {int(rng.integers(1, 9)):02d}  {'No.' if japanese else '#'}{_digits(rng, 4)}"
    )
    total = 0
    for i in rng.choice(len(items), int(rng.integers(2, 8)), replace=False):
        cents = int(rng.integers(1, 60)) * (10 if japanese else 25)
        total += cents
        amount = f"¥{cents * 10:,}" if japanese else f"{cents / 100:.2f}"
        code = f"{_digits(rng, 4)} " if chance(rng, 0.4) else ""
        lines.append(f"{code}{items[i]}  {amount}")
    tax = total // 10
    if japanese:
        lines += [
            f"小計  ¥{total * 10:,}",
            f"消費税  ¥{tax * 10:,}",
            f"合計  ¥{(total + tax) * 10:,}",
            f"お預り  ¥{((total + tax) // 100 + 1) * 1000:,}",
        ]
    else:
        lines += [
            f"SUBTOTAL  {total / 100:.2f}",
            f"TAX 8%  {tax / 100:.2f}",
            f"TOTAL  {(total + tax) / 100:.2f}",
            pick(rng, ("CASH", "VISA ****" + _digits(rng, 4), "CHANGE  0.00")),
        ]
    if chance(rng, 0.5):
        lines.append(f"{'取引' if japanese else 'TXN'} {_digits(rng, 4)}-{_digits(rng, 4)}")
    return _lines(lines)


STATIONS_EN = (
    "Central",
    "Riverside",
    "Airport",
    "Harbour",
    "Northgate",
    "Old Town",
    "Stadium",
    "University",
    "Parkway",
)
STATIONS_JA = ("東京", "新宿", "渋谷", "品川", "大阪", "京都", "横浜", "名古屋", "博多", "仙台", "上野", "池袋")


def timetable(rng: np.random.Generator, japanese: bool) -> list[Line]:
    if chance(rng, 0.5):
        lines = [
            pick(rng, ("発車時刻", "時刻表 平日", "のりば 3番線"))
            if japanese
            else pick(rng, ("DEPARTURES", "Bus 42 timetable", "Platform 3"))
        ]
        stations = STATIONS_JA if japanese else STATIONS_EN
        start = int(rng.integers(6 * 60, 22 * 60))
        for _ in range(int(rng.integers(4, 9))):
            start += int(rng.integers(3, 25))
            when = f"{start // 60 % 24:02d}:{start % 60:02d}"
            track = int(rng.integers(1, 13))
            status = pick(rng, ("定刻", "遅れ5分", "") if japanese else ("On time", "Delayed", "Boarding", ""))
            lines.append(f"{when}  {pick(rng, stations)}  {track}{'番線' if japanese else ''}  {status}".rstrip())
        return _lines(lines)
    # An hour-by-minute grid, as at a bus stop.
    lines = [pick(rng, ("時刻表", "平日ダイヤ")) if japanese else pick(rng, ("Weekdays", "Route 7 to Central"))]
    for hour in range(int(rng.integers(6, 10)), int(rng.integers(12, 22))):
        minutes = sorted({int(m) for m in rng.integers(0, 60, int(rng.integers(2, 6)))})
        lines.append(f"{hour:2d} | " + " ".join(f"{m:02d}" for m in minutes))
        if len(lines) > 10:
            break
    return _lines(lines)


NEWS_EN = (
    ("City council approves new bike lanes", "The plan adds 12 miles of lanes by 2027. Work starts in spring, and the council expects about 3,400 daily riders."),
    ("Local team wins regional final", "A late goal sealed a 2-1 win before a crowd of 8,500. The coach praised the defence."),
    ("Museum opens dinosaur hall", "The new hall shows 40 fossils, including a skeleton 11 metres long. Entry is free on Sundays."),
    ("Rain to continue through the weekend", "Forecasters expect up to 60 mm of rain. Temperatures stay near 14 degrees."),
    ("Library extends opening hours", "From June the main library opens 9:00 to 21:00 on weekdays, after a survey of 1,200 readers."),
    ("Harbour festival returns", "Boats, music and food stalls fill the waterfront for three days. Fireworks start at 20:30."),
)  # fmt: skip
NEWS_JA = (
    ("市内に新しい自転車道", "2027年までに約20キロの自転車道を整備する計画です。工事は春に始まります。"),
    ("地元チームが優勝", "終了間際のゴールで2対1の勝利。会場には約8500人が集まりました。"),
    ("恐竜展示室がオープン", "全長11メートルの骨格など40点の化石を展示しています。日曜日は入館無料です。"),
    ("週末も雨の予報", "最大60ミリの雨が予想されています。最高気温は14度前後の見込みです。"),
    ("図書館の開館時間を延長", "6月から平日は9時から21時まで開館します。利用者1200人の調査を受けた措置です。"),
    ("港まつり今年も開催", "3日間にわたり音楽や屋台が並びます。花火は20時30分から。"),
)  # fmt: skip


def news(rng: np.random.Generator, japanese: bool) -> list[Line]:
    headline, body = pick(rng, NEWS_JA if japanese else NEWS_EN)
    lines = [headline, date_text(rng, japanese)]
    extra = pick(rng, PROSE_JA if japanese else PROSE_EN)
    lines += _wrap(
        body + ("" if japanese else " ") + extra, int(rng.integers(14, 22)) if japanese else int(rng.integers(28, 44))
    )
    return _lines(lines)


# Original verses for the English poems; the Japanese ones are Edo-period haiku (public domain).
POEMS_EN = (
    ("Morning light on the window", "a kettle starts to sing", "the day has not yet decided", "what kind of day to be"),
    ("Leaves fall in the courtyard", "one by one, then all at once", "the bench keeps a place for you"),
    ("Salt wind over the harbour", "gulls argue with the tide", "the boats come home at dusk"),
    ("Under the old bridge", "the river remembers", "every rain it carried"),
    ("Snow on the rooftops", "the city holds its breath", "footprints lead to the bakery"),
)  # fmt: skip
POEMS_JA = (
    ("古池や", "蛙飛び込む", "水の音"),
    ("閑さや", "岩にしみ入る", "蝉の声"),
    ("菜の花や", "月は東に", "日は西に"),
    ("雪とけて", "村いっぱいの", "子どもかな"),
    ("夏草や", "兵どもが", "夢の跡"),
    ("春の海", "終日のたり", "のたりかな"),
)  # fmt: skip


def poem(rng: np.random.Generator, japanese: bool) -> list[Line]:
    return _lines(pick(rng, POEMS_JA if japanese else POEMS_EN))


def jan_code(rng: np.random.Generator) -> str:
    digits = [4, 9] + [int(d) for d in rng.integers(0, 10, 10)]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, digits)) + str(check)


def product_label(rng: np.random.Generator, japanese: bool) -> list[Line]:
    if chance(rng, 0.25):
        price = int(rng.integers(6, 30)) * 100
        if japanese:
            isbn = f"ISBN978-4-{_digits(rng, 4)}-{_digits(rng, 4)}-{_digits(rng, 1)}"
            return _lines([isbn, f"C{_digits(rng, 4)} ¥{price}E", f"定価（本体{price}円＋税）"])
        isbn = f"ISBN 978-1-{_digits(rng, 3)}-{_digits(rng, 5)}-{_digits(rng, 1)}"
        return _lines([isbn, f"${price // 100 + 3}.99 US", jan_code(rng)])
    if japanese:
        lines = [
            pick(rng, ("緑茶ティーバッグ", "国産はちみつ", "ミックスナッツ", "純米酒", "天然水")),
            f"内容量 {int(rng.integers(1, 20)) * 50}g",
            f"賞味期限 {date_text(rng, True)}",
            f"ロット {_digits(rng, 2)}-{_digits(rng, 4)}",
            "保存方法 直射日光を避けて保存",
            jan_code(rng),
        ]
    else:
        lines = [
            pick(
                rng,
                ("Organic Green Tea", "Wildflower Honey", "Roasted Almonds", "Sparkling Water", "Dark Chocolate 70%"),
            ),
            f"Net wt {int(rng.integers(2, 32))} oz ({int(rng.integers(50, 900))} g)",
            f"Best before {date_text(rng, False)}",
            f"LOT {_digits(rng, 3)}-{_digits(rng, 4)}",
            f"Calories {int(rng.integers(40, 300))}  Fat {int(rng.integers(0, 20))}g",
            jan_code(rng),
        ]
    keep = sorted(rng.choice(len(lines), int(rng.integers(3, len(lines) + 1)), replace=False))
    return _lines([lines[i] for i in keep])


WEEKDAYS_EN = ("Su", "Mo", "Tu", "We", "Th", "Fr", "Sa")
WEEKDAYS_JA = ("日", "月", "火", "水", "木", "金", "土")
MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def calendar(rng: np.random.Generator, japanese: bool) -> list[Line]:
    year, month = int(rng.integers(2020, 2028)), int(rng.integers(1, 13))
    first = int(rng.integers(0, 7))
    days = int(pick(rng, (28, 30, 31)))
    lines = [f"{year}年{month}月" if japanese else f"{MONTHS_EN[month - 1]} {year}"]
    lines.append(" ".join(WEEKDAYS_JA if japanese else WEEKDAYS_EN))
    week = ["  "] * first
    for day in range(1, days + 1):
        week.append(f"{day:2d}")
        if len(week) == 7:
            lines.append(" ".join(week))
            week = []
    if week:
        lines.append(" ".join(week))
    return _lines(lines)


TEAMS_EN = ("Tigers", "Eagles", "Sharks", "Rovers", "United", "Falcons", "Giants", "Wolves", "Comets", "Rangers")
TEAMS_JA = ("東京", "大阪", "名古屋", "福岡", "札幌", "横浜", "広島", "仙台")


def sports_score(rng: np.random.Generator, japanese: bool) -> list[Line]:
    a, b = rng.choice(len(TEAMS_JA if japanese else TEAMS_EN), 2, replace=False)
    teams = TEAMS_JA if japanese else TEAMS_EN
    if chance(rng, 0.5):
        innings = int(rng.integers(5, 10))
        top = rng.integers(0, 4, innings)
        bottom = rng.integers(0, 4, innings)
        header = "    " + " ".join(str(i + 1) for i in range(innings)) + "   R"
        lines = [
            header,
            f"{teams[a]:<4}" + " ".join(map(str, top)) + f"  {top.sum():2d}",
            f"{teams[b]:<4}" + " ".join(map(str, bottom)) + f"  {bottom.sum():2d}",
        ]
        return _lines(lines)
    sa, sb = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    state = pick(
        rng, ("試合終了", "後半 67分", "前半 23分") if japanese else ("FINAL", "2nd half 67'", "Q3 08:41", "HT")
    )
    return _lines([state, f"{teams[a]}  {sa} - {sb}  {teams[b]}", f"{date_text(rng, japanese)}"])


def sign(rng: np.random.Generator, japanese: bool) -> list[Line]:
    kind = rng.random()
    if kind < 0.45:
        return [Line(pick(rng, SIGNS_JA if japanese else SIGNS_EN))]
    if kind < 0.75:
        if japanese:
            return _lines(
                [
                    pick(rng, ("営業時間", "受付時間", "診療時間")),
                    f"{int(rng.integers(7, 12))}:00〜{int(rng.integers(17, 23))}:00",
                    pick(rng, ("定休日 水曜日", "土日祝 休み", "年中無休")),
                ]
            )
        return _lines(
            [
                "OPENING HOURS",
                f"Mon-Fri {int(rng.integers(7, 11))}:00 - {int(rng.integers(17, 22))}:00",
                f"Sat {int(rng.integers(8, 12))}:00 - {int(rng.integers(13, 18))}:00",
                pick(rng, ("Sun closed", "Sun 10:00 - 16:00")),
            ]
        )
    if japanese:
        return _lines(
            [
                pick(rng, ("駐車場", "P 時間貸")),
                f"30分 {int(rng.integers(1, 5)) * 100}円",
                f"最大料金 {int(rng.integers(6, 20)) * 100}円",
            ]
        )
    return _lines(
        [
            pick(rng, ("Exit 12", "Route 9 North", "City Centre")),
            f"{pick(rng, STATIONS_EN)} {int(rng.integers(2, 90))} km",
            f"{pick(rng, STATIONS_EN)} {int(rng.integers(2, 90))} km",
        ]
    )


def shopping_list(rng: np.random.Generator, japanese: bool) -> list[Line]:
    """A handwritten note with no personal data: errands, quantities, times."""
    if japanese:
        items = (
            "牛乳",
            "卵 10個",
            "パン",
            "りんご 3個",
            "洗剤",
            "電池 単3",
            "ゴミ出し 水曜",
            "歯医者 15:30",
            "図書館に本を返す",
            "お米 5kg",
            "トマト",
            "郵便局",
        )
        head = pick(rng, ("買い物", "やること", "メモ", "明日"))
    else:
        items = (
            "milk",
            "eggs x12",
            "bread",
            "3 apples",
            "batteries AA",
            "pick up kids 3:30",
            "dentist Tue 10am",
            "return library books",
            "rice 5 lb",
            "call about the car",
            "bin day Wed",
            "laundry",
        )
        head = pick(rng, ("To do", "Shopping", "Don't forget!", "Weekend"))
    picked = [items[i] for i in rng.choice(len(items), int(rng.integers(3, 7)), replace=False)]
    return _lines([head, *(("- " if chance(rng, 0.5) else "") + p for p in picked)])


def greeting(rng: np.random.Generator, japanese: bool) -> list[Line]:
    """Card-shaped text without personal data: greetings, name tags, stamp cards, quotes."""
    kind = rng.random()
    if kind < 0.3:
        if japanese:
            return _lines(
                [
                    pick(
                        rng,
                        (
                            "お誕生日おめでとう",
                            "ありがとう",
                            "あけましておめでとうございます",
                            "ご結婚おめでとうございます",
                        ),
                    ),
                    pick(rng, ("素敵な一年を", "これからもよろしく", "心を込めて")),
                ]
            )
        return _lines(
            [
                pick(rng, ("Happy Birthday!", "Thank You", "Congratulations", "Season's Greetings", "Get well soon")),
                pick(rng, ("Wishing you the best", "With love", "Have a wonderful year")),
            ]
        )
    if kind < 0.55:
        given = pick(rng, [g for g, _ in JA_GIVEN]) if japanese else pick(rng, EN_GIVEN)
        return _lines([pick(rng, ("はじめまして", "名札")) if japanese else "HELLO my name is", given])
    if kind < 0.8:
        head = (
            pick(rng, ("スタンプカード", "ポイントカード")) if japanese else pick(rng, ("STAMP CARD", "Loyalty Card"))
        )
        rule = (
            f"{int(rng.integers(5, 11))}個で1杯無料"
            if japanese
            else f"{int(rng.integers(5, 11))} stamps = 1 free coffee"
        )
        return _lines([head, rule, f"{'有効期限' if japanese else 'Valid until'} {date_text(rng, japanese)}"])
    return _lines(_wrap(pick(rng, SAYINGS_JA if japanese else SAYINGS_EN), 12 if japanese else 22))


def poster(rng: np.random.Generator, japanese: bool) -> list[Line]:
    """An event poster without contact data: title, date, time, place name, price."""
    if japanese:
        title = pick(rng, ("夏祭り", "フリーマーケット", "写真展", "ピアノ発表会", "古本市", "朝ヨガ教室"))
        place = pick(rng, ("市民会館", "中央公園", "駅前広場", "市立図書館"))
        return _lines(
            [
                title,
                date_text(rng, True),
                f"{int(rng.integers(9, 18))}:00〜{int(rng.integers(18, 22))}:00",
                f"会場 {place}",
                pick(rng, ("入場無料", f"参加費 {int(rng.integers(1, 20)) * 100}円")),
            ]
        )
    title = pick(rng, ("SUMMER FESTIVAL", "Flea Market", "Photo Exhibition", "Jazz Night", "Book Fair", "Morning Yoga"))
    place = pick(rng, ("Town Hall", "Central Park", "Riverside Pavilion", "City Library"))
    return _lines(
        [
            title,
            date_text(rng, False),
            f"{int(rng.integers(9, 12))}am - {int(rng.integers(3, 10))}pm",
            place,
            pick(rng, ("Free entry", f"Tickets ${int(rng.integers(5, 30))}", "All welcome")),
        ]
    )


def caption(rng: np.random.Generator, japanese: bool) -> list[Line]:
    """Incidental text on a photo: a caption, a watermark or a camera date stamp."""
    kind = rng.random()
    if kind < 0.35:
        y, m, d = int(rng.integers(2, 27)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        return [
            Line(
                pick(
                    rng,
                    (
                        f"'{y:02d} {m:2d} {d:2d}",
                        f"20{y:02d}.{m:02d}.{d:02d} {time_text(rng)}",
                        f"{m:02d}/{d:02d}/20{y:02d}",
                    ),
                )
            )
        ]
    if kind < 0.6:
        return [
            Line(
                pick(
                    rng,
                    (
                        "© Harbor Light Photo",
                        f"© 20{int(rng.integers(10, 27))} Sunny Days",
                        "photo: M. Ito",
                        "SAMPLE",
                    ),
                )
            )
        ]
    return [Line(pick(rng, SAYINGS_JA if japanese else SAYINGS_EN))]


def chat_messages(rng: np.random.Generator, japanese: bool, count: int) -> list[Line]:
    pool = CHAT_JA if japanese else CHAT_EN
    return _lines([pool[i] for i in rng.choice(len(pool), count, replace=False)])


def benign_text(rng: np.random.Generator) -> tuple[list[str], str]:
    """The lines of one image with ordinary text and no personal data: menus (most with prices,
    digits a personal-data detector must not fire on alone), signs, captions, prose."""
    japanese = chance(rng, 0.4)
    kind = rng.random()
    if kind < 0.35:
        lines = [line.text for line in menu(rng, japanese)]
    elif kind < 0.55:
        lines = [line.text for line in sign(rng, japanese)]
    elif kind < 0.8:
        lines = [pick(rng, SAYINGS_JA if japanese else SAYINGS_EN)]
    else:
        prose = PROSE_JA if japanese else PROSE_EN
        picked = [prose[i] for i in rng.choice(len(prose), int(rng.integers(2, 5)), replace=False)]
        text = ("" if japanese else " ").join(picked)
        lines = _wrap(text, int(rng.integers(10, 16)) if japanese else int(rng.integers(22, 36)))
    return lines, "ja" if japanese else "en"


FORM_TITLES_JA = ("会員登録申込書", "お届け先変更届", "入会申込書", "お客様カード", "アンケート", "申込書")
FORM_FIELDS_JA = ("氏名", "フリガナ", "住所", "電話番号", "メールアドレス", "生年月日")
