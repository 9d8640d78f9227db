"""The kinds of image the demo generators draw, one function each (Scene -> image).

personal_info kinds, each showing made-up contact data (training/demo_content.py):

- ``business_card``: a printed card in one of several layouts (logo left, centred, side band,
  two columns; light, dark or coloured), lying on a photo, a plain surface or paper.
- ``contact_card``: the on-screen contact or profile card with a generic avatar silhouette.
- ``shipping_label``: a parcel label (SHIP TO / FROM) or a Japanese delivery slip
  (お届け先 / ご依頼主 with 〒, address, 様 and TEL), with barcodes and tracking numbers.
- ``chat_pi``: a phone chat screenshot (status bar, header, bubbles, times) where one bubble
  gives a phone number, an e-mail or postal address or a messenger ID.
- ``handwritten_note``: a note on a sticky, ruled or plain sheet in a handwriting-like font
  with jittered words and baselines, usually photographed (turned, in perspective, shadowed).
- ``jp_form``: a Japanese form (氏名 / 住所 / 電話番号 ... fields filled in, typed or by hand),
  an envelope address block (〒 boxes; written vertically now and then) or a bare address block.
- ``profile_bio``: a social-profile screenshot whose header shows an @handle and whose bio
  gives a contact (LINE ID, phone, e-mail, another handle).
- ``flyer``: a poster or notice (lessons, for sale, room to let) with a phone or e-mail,
  sometimes with tear-off tabs carrying the number turned on its side.
- ``text_on_photo``: personal data written straight onto a photo, outlined or on a plate.
- ``bare_lines``: one to three bare lines of personal data filling a plain, paper or photo
  background (the original demo layout).

ham kinds: plain photos (``photo``, the largest share: most real traffic is photos), photos with
incidental text (date stamps, watermarks, captions), and text that looks like personal data
without being it: ``menu``, ``receipt`` (totals, tax, codes, dates; never a shop address or
phone), ``timetable`` (departure boards and hour grids), ``news``, ``poem``, ``chat_ham``
(screenshots of chats about times and amounts), ``product_label`` (JAN and ISBN codes, lots,
dates), ``calendar``, ``sports_score``, ``sign`` (opening hours, parking prices, distances),
and the layouts of personal_info kinds with no personal data in them: ``note_ham``
(handwritten errands), ``card_ham`` (greeting, stamp and name cards), ``form_blank`` (a form
whose 氏名 / 住所 / 電話番号 fields are empty), ``poster_ham`` (an event poster with no contact)
and ``social_post`` (a post screenshot with display names but no handles).

sexual kinds: the skin-tone blob stand-in over a photo or over a plain background.

Each function draws only from scene.rng and uses only the fonts and photos of scene.split."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from training import demo_content as content
from training import demo_render as render
from training.demo_content import Line, chance, pick
from training.demo_fonts import FontSpec
from training.demo_render import Doc, Scene

Colour = Sequence[float]


def _script(japanese: bool) -> str:
    return "ja" if japanese else "latin"


def _rgb(values: Sequence[float]) -> tuple[int, int, int]:
    return (int(values[0]), int(values[1]), int(values[2]))


def _size(scene: Scene, spec: FontSpec, japanese: bool, rel: float = 1.0, x_height: float | None = None) -> int:
    return render.size_for(spec, (x_height if x_height is not None else scene.x_height()) * rel, japanese)


def _new(scene: Scene, width: int, height: int, colour: Sequence[float], alpha: int | None = None) -> Doc:
    if alpha is None:
        return Doc(scene, Image.new("RGB", (max(1, int(width)), max(1, int(height))), _rgb(colour)))
    return Doc(scene, Image.new("RGBA", (max(1, int(width)), max(1, int(height))), (*_rgb(colour), alpha)))


# The largest a document is drawn: larger ones would have to shrink to fit MAX_SIDE.
DOC_MAX_W, DOC_MAX_H = 560, 600


def _finish_on_desk(
    scene: Scene,
    doc: Doc,
    fill: tuple[float, float] = (0.55, 0.92),
    scan_share: float = 0.25,
    shadow_share: float = 0.5,
    perspective_share: float = 0.3,
) -> Image.Image:
    """A document as photographed on a surface, or (scan_share) scanned: filling the frame.
    The canvas is sized around the document, so it is scaled only where MAX_SIDE demands."""
    rng = scene.rng
    w, h = doc.size
    if rng.random() < scan_share:
        cw, ch, f = render.frame(rng, w, h, float(rng.uniform(0.9, 0.97)))
        canvas = render.plain_background(rng, cw, ch)
        render.place(scene, canvas, doc, fill=(f, f), angle=float(rng.uniform(-2, 2)), perspective_share=0.0)
        return render.defects(scene, canvas, photographed=False)
    angle = scene.angle()
    # Room for the turned document.
    rad = np.deg2rad(abs(angle))
    turned_w, turned_h = w * np.cos(rad) + h * np.sin(rad), w * np.sin(rad) + h * np.cos(rad)
    cw, ch, f = render.frame(rng, turned_w, turned_h, float(rng.uniform(*fill)))
    canvas = render.desk_background(scene, cw, ch)
    render.place(
        scene,
        canvas,
        doc,
        fill=(f, f),
        angle=angle,
        perspective_share=perspective_share,
        shadow=rng.random() < shadow_share,
    )
    return render.defects(scene, canvas, photographed=True)


# ---------------------------------------------------------------------------------------------
# Cards


CARD_PANELS = (
    ((246, 255), (244, 255), (238, 252)),  # white
    ((238, 250), (230, 244), (210, 230)),  # cream
    ((20, 45), (25, 50), (40, 80)),  # navy / charcoal
    ((30, 45), (30, 45), (30, 45)),  # black
    ((200, 235), (215, 240), (225, 250)),  # pastel
)


def _card_colours(rng: np.random.Generator) -> tuple[Colour, Colour, Colour]:
    """(panel, ink, accent)."""
    panel_range = CARD_PANELS[int(rng.choice(len(CARD_PANELS), p=[0.45, 0.2, 0.15, 0.08, 0.12]))]
    panel = tuple(rng.uniform(*r) for r in panel_range)
    dark = float(np.mean(panel)) < 120
    ink = tuple(rng.uniform(215, 255, 3)) if dark else tuple(rng.uniform(0, 70, 3))
    accent = tuple(rng.uniform(30, 220, 3))
    return panel, ink, accent


def card(
    scene: Scene,
    header: Sequence[Line],
    body: Sequence[Line],
    japanese: bool,
    with_logo: bool | None = None,
) -> Doc:
    """A printed card: `header` (the first line largest: a name, a greeting) and `body` lines,
    in one of four layouts, with an abstract logo now and then."""
    rng = scene.rng
    panel, ink, accent = _card_colours(rng)
    x_height = scene.x_height()
    body_spec = scene.font(_script(japanese), ("sans", "serif", "mono", "display"))
    head_spec = body_spec if chance(rng, 0.5) else scene.font(_script(japanese), ("sans", "serif", "display"))
    size = _size(scene, body_spec, japanese, x_height=x_height)
    head_scale = float(rng.uniform(1.3, 2.0))
    head_ink = accent if chance(rng, 0.35) and float(np.mean(panel)) > 120 else ink
    layout = int(rng.integers(4))
    column = DOC_MAX_W * (0.5 if layout == 3 else 0.8)
    align = "center" if layout == 1 else ("right" if layout == 3 and chance(rng, 0.5) else "left")
    gap = float(rng.uniform(1.2, 1.45))
    pad_ratio, logo_ratio = float(rng.uniform(0.8, 1.6)), float(rng.uniform(2.0, 3.5))
    with_logo = with_logo if with_logo is not None else chance(rng, 0.55)
    ratio = float(rng.uniform(1.55, 1.85))
    landscape = chance(rng, 0.9)

    def layout_at(size: int) -> tuple[int, ...]:
        hw, hh = (
            render.measure_block(header, body_spec, size, 1.25, column, (head_spec, head_scale)) if header else (0, 0)
        )
        bw, bh = render.measure_block(body, body_spec, size, gap, column)
        pad, logo_side = int(size * pad_ratio), int(size * logo_ratio) if with_logo else 0
        if layout == 1:  # centred: logo, header, body stacked
            inner_w = max(hw, bw, logo_side)
            inner_h = logo_side + (pad // 2 if logo_side else 0) + hh + pad // 2 + bh
        elif layout == 3:  # two columns: header | body
            inner_w = hw + pad * 2 + bw
            inner_h = max(hh + logo_side + pad // 2, bh)
        else:  # 0: header above body, logo on the right; 2: side band with the logo
            inner_w = max(hw, bw) + (logo_side + pad if logo_side and layout == 0 else 0)
            inner_h = hh + pad // 2 + bh
        band = int(max(logo_side, size * 2.5) + pad) if layout == 2 else 0
        card_w, card_h = inner_w + 2 * pad + band, inner_h + 2 * pad
        # Cards are about 91 x 55 mm; widened or heightened towards that shape where there is room.
        if landscape:
            card_w, card_h = max(card_w, min(DOC_MAX_W, int(card_h * ratio))), max(card_h, int(card_w / ratio * 0.8))
        else:  # a portrait card
            card_h = max(card_h, min(DOC_MAX_H, int(card_w * 1.3)))
        return pad, logo_side, inner_w, inner_h, band, card_w, card_h

    pad, logo_side, _, inner_h, band, card_w, card_h = layout_at(size)
    # Drawn no larger than a canvas can show, rather than drawn large and shrunk.
    fit = min(1.0, DOC_MAX_W / card_w, DOC_MAX_H / card_h)
    if fit < 0.97:
        size = max(6, int(size * fit))
        pad, logo_side, _, inner_h, band, card_w, card_h = layout_at(size)
    head = (
        render.text_block(
            scene, header, body_spec, size, head_ink, heading=(head_spec, head_scale), gap=1.25, max_width=column
        )
        if header
        else None
    )
    block = render.text_block(scene, body, body_spec, size, ink, gap=gap, align=align, max_width=column)
    hw, hh = head.size if head else (0, 0)
    bw, bh = block.size
    doc = _new(scene, card_w, card_h, panel, alpha=0)
    radius = int(min(card_w, card_h) * rng.uniform(0.0, 0.08))
    doc.draw.rounded_rectangle((0, 0, card_w - 1, card_h - 1), radius=radius, fill=(*_rgb(panel), 255))
    if layout == 2:
        doc.draw.rectangle((0, 0, band, card_h), fill=(*_rgb(accent), 255))
    elif chance(rng, 0.3):
        y = card_h - int(size * 0.6)
        doc.draw.rectangle((0, y, card_w, card_h), fill=(*_rgb(accent), 255))
    x0, y0 = pad + band, pad + (card_h - 2 * pad - inner_h) // 2
    logo_colour = _rgb(accent if layout != 2 else ink)
    if layout == 1:
        cx = card_w // 2
        if logo_side:
            render.logo(rng, doc.draw, (cx - logo_side / 2, y0, cx + logo_side / 2, y0 + logo_side), logo_colour)
            y0 += logo_side + pad // 2
        if head:
            doc.paste(head, (cx - hw // 2, y0))
            y0 += hh + pad // 2
        doc.paste(block, (cx - bw // 2, y0))
    elif layout == 3:
        if logo_side:
            render.logo(rng, doc.draw, (x0, y0, x0 + logo_side, y0 + logo_side), logo_colour)
        if head:
            doc.paste(head, (x0, y0 + logo_side + (pad // 2 if logo_side else 0)))
        divider = x0 + hw + pad
        doc.draw.line((divider, pad, divider, card_h - pad), fill=(*_rgb(accent), 255), width=max(1, size // 10))
        doc.paste(block, (card_w - pad - bw, card_h - pad - bh))
    else:
        if layout == 2 and logo_side:
            render.logo(rng, doc.draw, (pad // 2, pad, pad // 2 + logo_side, pad + logo_side), _rgb(panel))
        elif logo_side:
            render.logo(rng, doc.draw, (card_w - pad - logo_side, pad, card_w - pad, pad + logo_side), logo_colour)
        if head:
            doc.paste(head, (x0, y0))
        # The contact lines sit at the bottom of the card.
        doc.paste(block, (x0, max(y0 + hh + pad // 2, card_h - pad - bh)))
    return doc


def business_card(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    who = content.person(rng, japanese)
    header = [Line(who.name)]
    if chance(rng, 0.7):
        header.append(Line(who.title))
    if chance(rng, 0.6):
        header.insert(1 if chance(rng, 0.5) else len(header), Line(who.company))
    if japanese and chance(rng, 0.4):
        header.append(Line(who.name_latin))
    body = content.contact_lines(rng, who, int(rng.integers(1, 5)))
    if chance(rng, 0.3):
        body.append(Line(f"www.{pick(rng, content.EXAMPLE_DOMAINS)}"))
    return _finish_on_desk(scene, card(scene, header, body, japanese))


def card_ham(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.greeting(rng, japanese)
    header, body = lines[:1], lines[1:] or [Line(pick(rng, content.SAYINGS_JA if japanese else content.SAYINGS_EN))]
    return _finish_on_desk(scene, card(scene, header, body, japanese))


def contact_card(scene: Scene) -> Image.Image:
    """An on-screen contact card: a rounded panel, a generic avatar beside or above the text."""
    rng = scene.rng
    japanese = chance(rng, 0.4)
    who = content.person(rng, japanese)
    lines = [Line(who.name), *content.contact_lines(rng, who, int(rng.integers(1, 3)))][:4]
    dark = chance(rng, 0.3)
    panel = tuple(rng.uniform(25, 60, 3)) if dark else tuple(rng.uniform(232, 255, 3))
    ink = tuple(rng.uniform(200, 255, 3)) if dark else tuple(rng.uniform(0, 80, 3))
    spec = scene.font(_script(japanese), ("sans", "serif"))
    size = _size(scene, spec, japanese)
    block = render.text_block(
        scene, lines, spec, size, ink, max_width=DOC_MAX_W * 0.6, heading=(spec, float(rng.uniform(1.0, 1.4)))
    )
    bw, bh = block.size
    pad = int(size * rng.uniform(0.6, 1.2))
    beside = chance(rng, 0.65)
    diameter = int(max(bh * rng.uniform(0.7, 1.0), size * 2.5)) if beside else int(bw * rng.uniform(0.3, 0.5))
    if beside:
        card_w, card_h = diameter + bw + 3 * pad, max(diameter, bh) + 2 * pad
    else:
        card_w, card_h = max(diameter, bw) + 2 * pad, diameter + bh + 3 * pad
    doc = _new(scene, card_w, card_h, panel, alpha=0)
    border = _rgb(np.clip(np.array(panel) + (40 if dark else -40), 0, 255))
    doc.draw.rounded_rectangle(
        (0, 0, card_w - 1, card_h - 1),
        radius=max(2, min(card_w, card_h) // 10),
        fill=(*_rgb(panel), 255),
        outline=(*border, 255),
        width=max(1, min(card_w, card_h) // 80),
    )
    if beside:
        render.paste_avatar(rng, doc.img, (pad, (card_h - diameter) // 2), diameter)
        doc.paste(block, (2 * pad + diameter, (card_h - bh) // 2))
    else:
        render.paste_avatar(rng, doc.img, ((card_w - diameter) // 2, pad), diameter)
        doc.paste(block, ((card_w - bw) // 2, 2 * pad + diameter))
    cw, ch, f = render.frame(rng, card_w, card_h, float(rng.uniform(0.6, 0.97)))
    img, _ = _background(scene, cw, ch)
    render.place(
        scene, img, doc, fill=(f, f), angle=0.0 if chance(rng, 0.7) else scene.angle() * 0.5, perspective_share=0.0
    )
    return render.defects(scene, img, photographed=False)


def _background(scene: Scene, width: int, height: int) -> tuple[Image.Image, bool]:
    r = scene.rng.random()
    if r < 0.35:
        return render.plain_background(scene.rng, width, height), False
    if r < 0.65:
        return render.paper_background(scene.rng, width, height), False
    return scene.photo(width, height), True


# ---------------------------------------------------------------------------------------------
# Shipping labels


def _tracking(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return pick(
        rng,
        (
            "1Z " + " ".join("".join(pick(rng, letters + "0123456789") for _ in range(4)) for _ in range(4)),
            "".join(pick(rng, letters) for _ in range(2)) + content._digits(rng, 9) + "US",
            " ".join(content._digits(rng, 4) for _ in range(3)),
        ),
    )


def shipping_label(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.5)
    to, sender = content.person(rng, japanese), content.person(rng, japanese)
    spec = scene.font(_script(japanese), ("sans", "mono", "serif"))
    bold = scene.font(_script(japanese), ("sans", "display"))
    x_height = scene.x_height()
    size = _size(scene, spec, japanese, x_height=x_height)
    # About 22 lines' worth of height in all, sections, barcode and margins together.
    size = min(size, int(DOC_MAX_H / 22))
    small = max(7, int(size * 0.75))
    sender_size = max(7, int(size * float(rng.uniform(0.8, 1.0))))
    ink = (15, 15, 15)
    sections: list[tuple[Line, list[Line], int]] = []
    if japanese:
        to_lines = [*to.address_lines(rng), Line(f"{to.name} 様")]
        if chance(rng, 0.7):
            to_lines.append(to.phone_line(rng))
        sections.append((Line("お届け先"), to_lines, size))
        if chance(rng, 0.75):
            from_lines = [*sender.address_lines(rng, one_line=chance(rng, 0.5)), Line(sender.name)]
            if chance(rng, 0.5):
                from_lines.append(sender.phone_line(rng))
            sections.append((Line("ご依頼主"), from_lines, sender_size))
        extra = [
            Line(f"品名 {pick(rng, ('書籍', '衣類', '食品', '雑貨', '精密機器'))}"),
            Line(f"お問い合わせ番号 {_tracking(rng)}"),
        ]
    else:
        to_lines = [Line(to.name.upper() if chance(rng, 0.4) else to.name), *to.address_lines(rng)]
        if chance(rng, 0.4):
            to_lines.append(to.phone_line(rng))
        sections.append((Line(pick(rng, ("SHIP TO:", "TO:", "DELIVER TO"))), to_lines, size))
        if chance(rng, 0.75):
            sections.insert(
                0,
                (
                    Line(pick(rng, ("FROM:", "SENDER", "RETURN TO:"))),
                    [Line(sender.name), *sender.address_lines(rng)],
                    sender_size,
                ),
            )
        extra = [
            Line(f"TRACKING # {_tracking(rng)}"),
            Line(f"WT {rng.uniform(0.2, 30):.1f} LB   {pick(rng, ('PRIORITY', 'GROUND', 'EXPRESS'))}"),
        ]
    blocks = []
    for title, lines, s in sections:
        blocks.append(
            render.text_block(
                scene, [title, *lines], spec, s, ink, heading=(bold, 0.8), gap=1.25, max_width=DOC_MAX_W - 40
            )
        )
    extra_block = render.text_block(scene, extra, spec, small, ink, gap=1.3, max_width=DOC_MAX_W - 40)
    pad = int(size * 0.7)
    width = max(max(b.size[0] for b in blocks), extra_block.size[0]) + 2 * pad
    bar_h = int(size * rng.uniform(2.0, 3.5))
    height = sum(b.size[1] for b in blocks) + extra_block.size[1] + bar_h + pad * (len(blocks) + 3)
    paper = (252, 252, 250) if chance(rng, 0.75) else tuple(rng.uniform(*r) for r in render.PAPER_TINTS["kraft"])
    doc = _new(scene, width, height, paper, alpha=255)
    doc.draw.rectangle((0, 0, width - 1, height - 1), outline=(0, 0, 0, 255), width=max(1, size // 8))
    y = pad
    for block in blocks:
        doc.paste(block, (pad, y))
        y += block.size[1] + pad // 2
        doc.draw.line((0, y, width, y), fill=(0, 0, 0, 255), width=max(1, size // 10))
        y += pad // 2
    render.barcode(rng, doc.draw, (pad, y, width - pad, y + bar_h), ink)
    y += bar_h + pad // 2
    doc.paste(extra_block, (pad, y))
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.2)


# ---------------------------------------------------------------------------------------------
# Phone screens


SCREEN_THEMES = (
    # background, my bubble, their bubble, my ink, their ink
    ((140, 171, 216), (133, 226, 112), (255, 255, 255), (10, 10, 10), (10, 10, 10)),  # LINE-like
    ((255, 255, 255), (10, 132, 255), (229, 229, 234), (255, 255, 255), (10, 10, 10)),  # iMessage-like
    ((236, 229, 221), (220, 248, 198), (255, 255, 255), (10, 10, 10), (10, 10, 10)),  # WhatsApp-like
    ((0, 0, 0), (10, 132, 255), (38, 38, 41), (255, 255, 255), (235, 235, 235)),  # dark
    ((246, 246, 248), (88, 101, 242), (255, 255, 255), (255, 255, 255), (20, 20, 20)),
)


def _screen_size(rng: np.random.Generator) -> tuple[int, int]:
    # Phone screenshots are tall; the reader reads them at this size, the CNN squashed.
    width = int(rng.integers(320, 401))
    height = int(min(render.MAX_SIDE, width * rng.uniform(1.6, 2.1)))
    return width, height


def _bubble(
    scene: Scene, line: Line, spec: FontSpec, size: int, max_w: float, fill: Sequence[float], ink: Sequence[float]
) -> Doc:
    lines = render.wrap(spec, size, line, max_w)
    block = render.text_block(scene, lines, spec, size, ink, gap=1.25)
    w, h = block.size
    pad = max(3, size // 3)
    doc = _new(scene, w + 2 * pad, h + pad, (0, 0, 0), alpha=0)
    doc.draw.rounded_rectangle((0, 0, w + 2 * pad - 1, h + pad - 1), radius=max(4, size // 1), fill=(*_rgb(fill), 255))
    doc.paste(block, (pad, pad // 2))
    return doc


def chat(scene: Scene, personal: bool) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    width, height = _screen_size(rng)
    theme = SCREEN_THEMES[int(rng.integers(len(SCREEN_THEMES)))]
    bg, mine_fill, theirs_fill, mine_ink, theirs_ink = theme
    dark = float(np.mean(bg)) < 100
    screen = Doc(scene, Image.new("RGB", (width, height), _rgb(bg)))
    spec = scene.font(_script(japanese), ("sans",) if chance(rng, 0.85) else ("sans", "serif", "hand"))
    size = min(_size(scene, spec, japanese), max(9, int(width / (9 if japanese else 13))))
    bar = int(width * 0.07)
    header = int(width * 0.13)
    bar_colour = tuple(np.clip(np.array(bg) * 0.9, 0, 255)) if not dark else (28, 28, 30)
    screen.draw.rectangle((0, 0, width, bar + header), fill=_rgb(bar_colour))
    render.status_bar(scene, screen, bar, dark, spec)
    title = pick(rng, content.CHAT_NAMES_JA if japanese else content.CHAT_NAMES_EN)
    head_ink = (240, 240, 240) if dark else (20, 20, 20)
    screen.text((width * 0.06, bar + header / 2), "<", spec, int(header * 0.5), head_ink, anchor="lm")
    screen.text((width / 2, bar + header / 2), title, spec, int(header * 0.42), head_ink, anchor="mm")
    input_h = int(width * 0.12)
    screen.draw.rectangle((0, height - input_h, width, height), fill=_rgb(bar_colour))
    screen.draw.rounded_rectangle(
        (width * 0.05, height - input_h * 0.8, width * 0.82, height - input_h * 0.2),
        radius=input_h // 3,
        fill=(60, 60, 64) if dark else (255, 255, 255),
    )
    placeholder = "メッセージを入力" if japanese else "Message"
    screen.text(
        (width * 0.09, height - input_h / 2),
        placeholder,
        spec,
        max(8, int(input_h * 0.32)),
        (140, 140, 140),
        anchor="lm",
    )
    # Laid out from the bottom up, as chats are; the personal message is always shown whole.
    messages = content.chat_messages(rng, japanese, 8)
    at = int(rng.integers(0, 3)) if personal else -1
    if personal:
        messages.insert(at, content.personal_sentence(rng, content.person(rng, japanese)))
    top, y = bar + header + 4, height - input_h - 6
    time_size = max(7, int(size * 0.6))
    sides = [chance(rng, 0.5) for _ in messages]
    bubbles: list[Doc | None] = [None] * len(messages)

    def bubble_of(i: int) -> Doc:
        if bubbles[i] is None:
            mine = sides[i]
            bubbles[i] = _bubble(
                scene,
                messages[i],
                spec,
                size,
                width * 0.62,
                mine_fill if mine else theirs_fill,
                mine_ink if mine else theirs_ink,
            )
        made = bubbles[i]
        assert made is not None
        return made

    reserve = bubble_of(at).size[1] + size if personal else 0
    for i in range(len(messages)):
        if i == at:
            reserve = 0
        elif i < at and y - bubble_of(i).size[1] - reserve < top:
            continue  # the personal message needs the room
        bubble = bubble_of(i)
        bw, bh = bubble.size
        # A bubble wider than the screen (an e-mail address is never broken) is shrunk to fit.
        scale = min(1.0, (width - 16) / bw, (y - top) / bh if i == at else 1.0)
        if y - bh * scale < top:
            break
        x = width - int(bw * scale) - 8 if sides[i] else 8
        screen.paste(bubble, (x, int(y - bh * scale)), scale)
        stamp = f"{int(rng.integers(0, 24))}:{int(rng.integers(0, 60)):02d}"
        stamp_x = x - 4 if sides[i] else x + int(bw * scale) + 4
        screen.text((stamp_x, y), stamp, spec, time_size, (150, 150, 150), anchor="rd" if sides[i] else "ld")
        y -= int(bh * scale) + int(size * rng.uniform(0.5, 1.1))
    return render.defects(scene, screen.final(), photographed=False)


def chat_pi(scene: Scene) -> Image.Image:
    return chat(scene, personal=True)


def chat_ham(scene: Scene) -> Image.Image:
    return chat(scene, personal=False)


# ---------------------------------------------------------------------------------------------
# Handwriting


INKS = ((25, 45, 140), (20, 20, 25), (90, 90, 95), (160, 30, 30), (20, 80, 50))


def hand_line(
    doc: Doc, xy: tuple[float, float], line: Line, spec: FontSpec, size: int, ink: Sequence[float], slope: float
) -> float:
    """One line as if written by hand: word by word (a few characters at a time in Japanese),
    each nudged off the baseline, the whole line drifting by `slope`. Returns its width."""
    rng = doc.scene.rng
    spec, face = doc.face(spec, size, line.text)
    x, y = xy
    if content.is_japanese(line.text):
        pieces, sep = [], ""
        i = 0
        while i < len(line.text):
            n = int(rng.integers(1, 4))
            pieces.append(line.text[i : i + n])
            i += n
    else:
        pieces, sep = line.text.split(" "), " "
    space = face.getlength(" ") if sep else 0.0
    colour = (*_rgb(ink), 255) if doc.img.mode == "RGBA" else _rgb(ink)
    start = x
    for piece in pieces:
        dy = float(rng.normal(0, size * 0.06)) + slope * (x - start)
        doc.draw.text((x, y + dy), piece, font=face, fill=colour)
        x += face.getlength(piece) + space * float(rng.uniform(0.8, 1.4)) + float(rng.normal(0, size * 0.03))
    doc.record(spec, line, face.size)
    return x - start


def note(scene: Scene, lines: Sequence[Line], japanese: bool) -> Image.Image:
    rng = scene.rng
    spec = scene.font(_script(japanese), ("hand",))
    size = _size(scene, spec, japanese, rel=float(rng.uniform(1.0, 1.3)))
    ink = INKS[int(rng.choice(len(INKS), p=[0.4, 0.3, 0.15, 0.1, 0.05]))]
    gap = float(rng.uniform(1.4, 1.9))
    size = min(size, max(8, int(DOC_MAX_H / (gap * len(lines) + 3))))
    lines = [piece for ln in lines for piece in render.wrap(spec, size, ln, DOC_MAX_W * 0.8)]
    widths = [render.text_width(spec, size, ln.text) for ln in lines]
    pad = int(size * rng.uniform(0.8, 1.6))
    width = int(max(widths) * 1.15) + 2 * pad
    height = int(size * gap * len(lines)) + 2 * pad
    sticky = chance(rng, 0.4)
    if sticky:
        side = max(width, height)
        width, height = side, int(side * rng.uniform(0.9, 1.1))
    tint = str(rng.choice(["yellow", "pink", "blue", "green"])) if sticky else str(rng.choice(["white", "cream"]))
    paper = render.paper_background(rng, width, height, tint=tint, ruled=False if sticky else chance(rng, 0.6))
    doc = Doc(scene, paper.convert("RGBA"))
    y = float(pad)
    for line in lines:
        x = pad + float(rng.uniform(0, size * 0.8))
        hand_line(doc, (x, y), line, spec, int(size * rng.uniform(0.92, 1.08)), ink, float(rng.uniform(-0.04, 0.04)))
        y += size * gap * float(rng.uniform(0.92, 1.08))
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.25, shadow_share=0.6, perspective_share=0.45)


def handwritten_note(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    who = content.person(rng, japanese)
    first = (
        pick(rng, (Line(f"{who.name}さん"), Line("連絡先"), Line("新しい住所"), Line("メモ")))
        if japanese
        else pick(rng, (Line(who.name), Line(f"Call {who.given_latin}"), Line("New address"), Line("Contact")))
    )
    lines = [first, *content.contact_lines(rng, who, int(rng.integers(1, 3)))]
    if chance(rng, 0.35):
        lines.insert(int(rng.integers(1, len(lines) + 1)), content.shopping_list(rng, japanese)[1])
    return note(scene, lines, japanese)


def note_ham(scene: Scene) -> Image.Image:
    japanese = chance(scene.rng, 0.45)
    return note(scene, content.shopping_list(scene.rng, japanese), japanese)


# ---------------------------------------------------------------------------------------------
# Japanese forms and address blocks


def _vertical(doc: Doc, x: float, y: float, line: Line, spec: FontSpec, size: int, ink: Sequence[float]) -> float:
    """`line` written top to bottom centred on x (digits full width, dashes turned); returns
    the y below it."""
    text = content.full_width(line.text).replace("－", "｜").replace("ー", "｜").replace(" ", "\u3000")
    spec, face = doc.face(spec, size, text)
    colour = (*_rgb(ink), 255) if doc.img.mode == "RGBA" else _rgb(ink)
    for ch in text:
        if ch != "\u3000":
            doc.draw.text((x, y), ch, font=face, fill=colour, anchor="mt")
        y += size * 1.05
    doc.record(spec, line, face.size)
    return y


def envelope(scene: Scene, who: content.Person, vertical: bool) -> Doc:
    """An envelope or postcard address side: red 〒 boxes, the address, the name with 様."""
    rng = scene.rng
    spec = scene.font("ja", ("serif", "sans", "hand", "brush"))
    size = _size(scene, spec, True, rel=1.2)
    ink = (20, 20, 20) if chance(rng, 0.8) else (25, 45, 140)
    postcode, place = who.address
    digits = "".join(ch for ch in content.full_width(postcode) if ch in "０１２３４５６７８９")
    name = Line(f"{who.name} 様", ())
    address = Line(place, (content.ADDRESS,))
    box = int(size * 1.3)
    # Long addresses take two columns, broken before the building name when there is one.
    columns = [Line(place[i : i + 12].strip(), address.entities) for i in range(0, len(place), 12)]
    if vertical:
        longest = max(len(c.text) for c in columns)
        height = int(max(longest, len(name.text) * 1.4) * size * 1.05 + box * 2.5)
        width = int(size * (5.0 + 1.4 * len(columns)))
        columns = [c for c in columns if c.text]
    else:
        columns = render.wrap(spec, size, address, DOC_MAX_W - size * 3)
        width = int(
            max(
                [render.text_width(spec, size, c.text) for c in columns]
                + [render.text_width(spec, int(size * 1.5), name.text)]
            )
            + size * 3
        )
        height = int(box * 2 + size * (4.5 + 1.4 * len(columns)))
    width = max(width, int(box * 8.2))
    doc = _new(scene, width, height, (250, 248, 242), alpha=255)
    red = (210, 50, 50, 255)
    x0 = width - box * 7.6
    code_ink = ink
    for i, ch in enumerate(digits[:7]):
        bx = x0 + i * box * 1.05 + (box * 0.3 if i >= 3 else 0)
        doc.draw.rectangle((bx, box * 0.4, bx + box * 0.9, box * 1.4), outline=red, width=max(1, size // 12))
        doc.text(
            (bx + box * 0.45, box * 0.9), Line(ch, (content.POSTAL_CODE,)), spec, int(box * 0.75), code_ink, anchor="mm"
        )
    if vertical:
        x = width - size * 1.5
        for part in columns:
            _vertical(doc, x, box * 2.2, part, spec, size, ink)
            x -= size * 1.4
        _vertical(doc, min(width / 2, x - size), box * 2.2 + size, name, spec, int(size * 1.5), ink)
    else:
        y = box * 2.0
        for part in columns:
            doc.text((size * 1.2, y), part, spec, size, ink)
            y += size * 1.4
        doc.text((size * 1.2, y + size), name, spec, int(size * 1.5), ink)
    return doc


def form(scene: Scene, filled: bool) -> Doc:
    """A form with label cells (氏名, 住所, 電話番号, ...) and value cells, filled in with
    made-up personal data (typed or handwritten) or left empty."""
    rng = scene.rng
    who = content.person(rng, True)
    label_spec = scene.font("ja", ("sans", "serif"))
    value_spec = scene.font("ja", ("hand",)) if chance(rng, 0.45) else label_spec
    # Forms are dense; their text is drawn a little larger to stay legible once fitted.
    x_height = scene.x_height() * 1.15
    size = _size(scene, label_spec, True, x_height=x_height)
    value_size = _size(scene, value_spec, True, x_height=x_height * float(rng.uniform(1.0, 1.2)))
    fields = [f for f in content.FORM_FIELDS_JA if f != "フリガナ" or not filled]
    chosen = sorted(rng.choice(len(fields), int(rng.integers(3, 6)), replace=False))
    fields = [fields[i] for i in chosen]
    if filled and not {"住所", "電話番号", "メールアドレス"} & set(fields):
        fields.append(pick(rng, ("住所", "電話番号")))
    rows: list[tuple[str, list[Line]]] = []
    for f in fields:
        if not filled:
            rows.append((f, [Line("〒") if f == "住所" and chance(rng, 0.5) else Line("")]))
        elif f == "氏名":
            rows.append((f, [Line(who.name)]))
        elif f == "住所":
            rows.append((f, who.address_lines(rng)))
        elif f == "電話番号":
            rows.append((f, [Line(who.phone, (content.PHONE,))]))
        elif f == "メールアドレス":
            rows.append((f, [Line(who.email, (content.EMAIL,))]))
        elif f == "生年月日":
            rows.append((f, [Line(content.date_text(rng, True))]))
        else:
            rows.append((f, [Line("")]))
    # Forms label the e-mail field in several ways; the short ones leave the value more room.
    email_label = pick(rng, ("メールアドレス", "E-mail", "メール", "Mail"))
    rows = [(email_label if f == "メールアドレス" else f, v) for f, v in rows]
    original = rows

    def wrapped(size: int, value_size: int) -> tuple[int, list[tuple[str, list[Line]]]]:
        label_w = int(max(render.text_width(label_spec, size, f) for f, _ in original) + size * 1.2)
        room = DOC_MAX_W - label_w - size * 3
        return label_w, [
            (f, [p for v in values for p in render.wrap(value_spec, value_size, v, room)]) for f, values in original
        ]

    label_w, rows = wrapped(size, value_size)

    # Drawn no larger than a canvas can show (an e-mail address does not wrap; about 1.5 line
    # heights a field, and the title).
    def fit_of(rows: list[tuple[str, list[Line]]]) -> float:
        widest = (
            label_w + size * 3 + max(render.text_width(value_spec, value_size, ln.text) for _, v in rows for ln in v)
        )
        tallest = size * 5.8 + sum(max(len(v), 1) * value_size * 1.35 + size * 0.9 for _, v in rows)
        return min(1.0, DOC_MAX_H / tallest, DOC_MAX_W / widest)

    # Fewer fields rather than smaller text: fields without personal data go first.
    while fit_of(rows) < 0.8 and len(rows) > 2 and any(not any(ln.entities for ln in v) for _, v in rows):
        drop = max(i for i, (_, v) in enumerate(rows) if not any(ln.entities for ln in v))
        original = [r for i, r in enumerate(original) if i != drop]
        rows = [r for i, r in enumerate(rows) if i != drop]
    fit = fit_of(rows)
    if fit < 0.97:
        size, value_size = max(7, int(size * fit)), max(7, int(value_size * fit))
        label_w, rows = wrapped(size, value_size)
    value_w = int(
        max([render.text_width(value_spec, value_size, ln.text) for _, v in rows for ln in v] + [size * 12.0])
        + size * 1.5
    )
    title = pick(rng, content.FORM_TITLES_JA)
    title_h = int(size * 2.6)
    row_h = [int(max(len(v), 1) * value_size * 1.35 + size * 0.9) for _, v in rows]
    pad = int(size * 0.8)
    width = label_w + value_w + 2 * pad
    height = title_h + sum(row_h) + 2 * pad + (int(size * 1.6) if chance(rng, 0.5) else 0)
    doc = _new(scene, width, height, (252, 252, 250), alpha=255)
    line_colour = (90, 90, 90, 255) if chance(rng, 0.6) else (60, 90, 160, 255)
    doc.text((width / 2, pad + title_h / 2), title, label_spec, int(size * 1.35), (20, 20, 20), anchor="mm")
    y = pad + title_h
    shade = (235, 238, 242, 255) if chance(rng, 0.6) else (252, 252, 250, 255)
    ink = (20, 20, 20) if value_spec is label_spec else INKS[int(rng.integers(3))]
    for (label, values), h in zip(rows, row_h, strict=True):
        doc.draw.rectangle((pad, y, pad + label_w, y + h), fill=shade, outline=line_colour, width=1)
        doc.draw.rectangle((pad + label_w, y, width - pad, y + h), outline=line_colour, width=1)
        doc.text((pad + size * 0.5, y + h / 2), label, label_spec, size, (30, 30, 30), anchor="lm")
        vy = y + (h - len(values) * value_size * 1.35) / 2
        for value in values:
            doc.text((pad + label_w + size * 0.6, vy), value, value_spec, value_size, ink)
            vy += value_size * 1.35
        y += h
    if height - y > size:
        doc.text(
            (pad, y + size * 0.4),
            f"記入日 {content.date_text(rng, True) if filled else '　　年　　月　　日'}",
            label_spec,
            int(size * 0.85),
            (60, 60, 60),
        )
    return doc


def jp_form(scene: Scene) -> Image.Image:
    rng = scene.rng
    r = rng.random()
    if r < 0.55:
        doc = form(scene, filled=True)
    elif r < 0.8:
        doc = envelope(scene, content.person(rng, True), vertical=chance(rng, 0.5))
    else:
        who = content.person(rng, True)
        spec = scene.font("ja", ("sans", "serif", "hand"))
        lines = [*who.address_lines(rng), Line(f"{who.name} 様")]
        if chance(rng, 0.5):
            lines.append(who.phone_line(rng))
        doc = render.text_block(
            scene, lines, spec, _size(scene, spec, True), (20, 20, 20), gap=1.4, max_width=DOC_MAX_W - 40
        )
        paper = render.paper_background(rng, doc.size[0] + 40, doc.size[1] + 40, tint="white", ruled=False)
        sheet = Doc(scene, paper.convert("RGBA"))
        sheet.paste(doc, (20, 20))
        doc = sheet
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.35)


def form_blank(scene: Scene) -> Image.Image:
    return _finish_on_desk(scene, form(scene, filled=False), fill=(0.6, 0.95), scan_share=0.35)


# ---------------------------------------------------------------------------------------------
# Social screens


BIO_LINES_EN = (
    "Coffee lover | Tokyo",
    "photographer / traveller",
    "books, cats and rainy days",
    "runner. baker. dreamer.",
    "Design student",
    "Living my best life",
    "vintage finds + thrift hauls",
    "plant parent",
)
BIO_LINES_JA = (
    "カフェ巡りが好き",
    "写真とごはん",
    "東京在住の会社員",
    "旅行と猫",
    "ハンドメイド作家",
    "毎日パン焼いてます",
    "大学生です",
    "フォローお気軽に",
)


def _screen(scene: Scene, japanese: bool) -> tuple[Doc, FontSpec, int, bool, tuple[int, int, int], int]:
    rng = scene.rng
    width, height = _screen_size(rng)
    dark = chance(rng, 0.3)
    bg = (0, 0, 0) if dark else (255, 255, 255)
    ink = (245, 245, 245) if dark else (15, 15, 15)
    doc = Doc(scene, Image.new("RGB", (width, height), bg))
    spec = scene.font(_script(japanese), ("sans",))
    size = min(_size(scene, spec, japanese), max(9, int(width / (10 if japanese else 14))))
    bar = int(width * 0.07)
    render.status_bar(scene, doc, bar, dark, spec)
    return doc, spec, size, dark, ink, bar


def _thumbnails(scene: Scene, doc: Doc, y: int, columns: int) -> None:
    width, height = doc.size
    side = width // columns
    while y < height:
        for c in range(columns):
            thumb = scene.photo(side - 2, side - 2, zoom=(0.2, 0.6))
            doc.img.paste(thumb, (c * side + 1, y))
        y += side


def profile_bio(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.4)
    who = content.person(rng, japanese)
    doc, spec, size, dark, ink, bar = _screen(scene, japanese)
    width, _ = doc.size
    grey = (150, 150, 150)
    y = bar + size
    own = Line(f"@{who.handle}", (content.MESSENGER_ID,))
    doc.text((width / 2, y), own, spec, int(size * 1.1), ink, anchor="mt")
    y += int(size * 2.2)
    diameter = int(width * 0.22)
    render.paste_avatar(rng, doc.img, (int(width * 0.06), y), diameter)
    stats = ("投稿", "フォロワー", "フォロー") if japanese else ("posts", "followers", "following")
    for i, label in enumerate(stats):
        cx = width * (0.45 + 0.19 * i)
        count = int(rng.integers(3, 5000))
        doc.text(
            (cx, y + diameter * 0.3),
            f"{count:,}" if count < 1000 else f"{count / 1000:.1f}k",
            spec,
            size,
            ink,
            anchor="mm",
        )
        doc.text((cx, y + diameter * 0.65), label, spec, max(7, int(size * 0.7)), grey, anchor="mm")
    y += diameter + size // 2
    doc.text((width * 0.06, y), who.name, spec, size, ink)
    y += int(size * 1.4)
    bio = [Line(pick(rng, BIO_LINES_JA if japanese else BIO_LINES_EN))]
    contact = pick(rng, ("messenger", "messenger", "phone", "email", "handle"))
    if contact == "messenger":
        bio.append(who.messenger(rng))
    elif contact == "phone":
        bio.append(
            Line(
                f"{pick(rng, ('予約 ', 'お問い合わせ ', '☎ ') if japanese else ('Bookings ', 'Call/Text ', 'WhatsApp '))}{who.mobile}",
                (content.PHONE,),
            )
        )
    elif contact == "email":
        bio.append(
            Line(
                f"{pick(rng, ('お仕事依頼 ', '連絡 ') if japanese else ('Collabs: ', 'Business: ', 'DM or '))}{who.email}",
                (content.EMAIL,),
            )
        )
    else:
        other = content.handle(rng)
        bio.append(
            Line(
                f"{pick(rng, ('サブ垢 @', 'お店 @') if japanese else ('DM me @', 'backup @', 'shop: @'))}{other}",
                (content.MESSENGER_ID,),
            )
        )
    if chance(rng, 0.5):
        bio.insert(int(rng.integers(0, len(bio) + 1)), Line(pick(rng, BIO_LINES_JA if japanese else BIO_LINES_EN)))
    for line in bio:
        for piece in render.wrap(spec, size, line, width * 0.88):
            doc.text((width * 0.06, y), piece, spec, size, ink)
            y += int(size * 1.3)
    y += size // 2
    button_h = int(size * 1.9)
    for i, label in enumerate(("フォロー", "メッセージ") if japanese else ("Follow", "Message")):
        x0 = width * (0.06 + 0.45 * i)
        fill = (0, 149, 246) if i == 0 else ((40, 40, 40) if dark else (239, 239, 239))
        doc.draw.rounded_rectangle((x0, y, x0 + width * 0.42, y + button_h), radius=6, fill=fill)
        doc.text(
            (x0 + width * 0.21, y + button_h / 2), label, spec, size, (255, 255, 255) if i == 0 else ink, anchor="mm"
        )
    y += button_h + size
    _thumbnails(scene, doc, y, 3)
    return render.defects(scene, doc.final(), photographed=False)


def social_post(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.4)
    doc, spec, size, _, ink, bar = _screen(scene, japanese)
    width, height = doc.size
    grey = (150, 150, 150)
    y = bar + size // 2
    diameter = int(size * 2.2)
    render.paste_avatar(rng, doc.img, (int(width * 0.04), y), diameter)
    poster_name = pick(
        rng,
        ("さくらカフェ", "週末写真部", "まちの本屋")
        if japanese
        else ("Sunny Days Cafe", "Harbor Light Photo", "City Library", "Green Thumb Club"),
    )
    doc.text((width * 0.04 + diameter + size * 0.5, y + diameter / 2), poster_name, spec, size, ink, anchor="lm")
    y += diameter + size // 2
    photo_h = min(int(width * rng.uniform(0.8, 1.1)), height - y - size * 8)
    if photo_h > 20:
        doc.img.paste(scene.photo(width, photo_h), (0, y))
        y += photo_h + size // 2
    likes = int(rng.integers(3, 9000))
    doc.text((width * 0.04, y), f"いいね！{likes:,}件" if japanese else f"{likes:,} likes", spec, size, ink)
    y += int(size * 1.4)
    caption = pick(rng, content.SAYINGS_JA if japanese else content.SAYINGS_EN)
    tags = " ".join(
        f"#{pick(rng, ('sunset', 'weekend', 'coffee', 'travel', 'food', 'nature', 'tokyo', 'photography'))}"
        for _ in range(int(rng.integers(1, 4)))
    )
    for piece in render.wrap(spec, size, Line(f"{caption} {tags}"), width * 0.92):
        if y + size > height:
            break
        doc.text((width * 0.04, y), piece, spec, size, ink)
        y += int(size * 1.3)
    if y + size < height:
        comments = int(rng.integers(2, 300))
        doc.text(
            (width * 0.04, y),
            f"コメント{comments}件をすべて見る" if japanese else f"View all {comments} comments",
            spec,
            max(7, int(size * 0.85)),
            grey,
        )
        y += int(size * 1.3)
    if y + size < height:
        doc.text(
            (width * 0.04, y),
            pick(rng, ("2時間前", "3日前", "昨日") if japanese else ("2 hours ago", "3 days ago", "Yesterday")),
            spec,
            max(7, int(size * 0.7)),
            grey,
        )
    return render.defects(scene, doc.final(), photographed=False)


# ---------------------------------------------------------------------------------------------
# Posters and flyers


FLYER_TITLES_EN = (
    "PIANO LESSONS",
    "ROOM FOR RENT",
    "FOR SALE",
    "LOST CAT",
    "GUITAR LESSONS",
    "DOG WALKER",
    "TUTORING",
    "GARAGE SALE",
    "BABYSITTER",
)
FLYER_TITLES_JA = (
    "家庭教師",
    "ピアノ教室",
    "売ります",
    "迷い猫",
    "ベビーシッター",
    "部屋貸します",
    "英会話",
    "犬の散歩代行",
)
FLYER_DETAILS_EN = (
    "All ages welcome",
    "Reasonable rates",
    "Call or text anytime",
    "Weekends only",
    "Good condition",
    "Reward offered",
    "First lesson free",
)
FLYER_DETAILS_JA = (
    "初心者歓迎",
    "お気軽にどうぞ",
    "土日のみ",
    "美品です",
    "お礼します",
    "体験レッスン無料",
    "駅から徒歩5分",
)


def _poster(
    scene: Scene, title: Line, details: Sequence[Line], contact: Sequence[Line], japanese: bool, tabs: Line | None
) -> Image.Image:
    rng = scene.rng
    on_photo = chance(rng, 0.45)
    width, height = render.random_size(rng, 400, render.MAX_SIDE)
    if height < width:
        width, height = height, width
    if on_photo:
        base = scene.photo(width, height)
        dim = Image.new("RGB", base.size, (0, 0, 0) if chance(rng, 0.6) else (255, 255, 255))
        base = Image.blend(base, dim, float(rng.uniform(0.35, 0.6)))
    else:
        base = (
            render.plain_background(rng, width, height)
            if chance(rng, 0.6)
            else render.paper_background(rng, width, height, ruled=False)
        )
    doc = Doc(scene, base)
    light = render.luma(base) > 120
    ink = tuple(rng.uniform(0, 60, 3)) if light else tuple(rng.uniform(215, 255, 3))
    accent = tuple(rng.uniform(0, 255, 3))
    head_spec = scene.font(_script(japanese), ("display", "sans", "hand", "brush"))
    body_spec = scene.font(_script(japanese), ("sans", "serif", "hand"))
    tab_h = int(height * 0.27) if tabs is not None else 0
    area_h = height - tab_h
    x_height = scene.x_height()
    size = _size(scene, body_spec, japanese, x_height=x_height)
    head_size = int(
        min(size * rng.uniform(1.8, 3.0), width * 0.85 / max(0.1, render.text_width(head_spec, 100, title.text) / 100))
    )
    blocks = [
        render.text_block(
            scene,
            [title],
            head_spec,
            head_size,
            accent if light and chance(rng, 0.4) else ink,
            align="center",
            stroke=0,
        )
    ]
    blocks.append(render.text_block(scene, details, body_spec, size, ink, align="center", max_width=width * 0.9))
    if contact:
        big = int(size * rng.uniform(1.1, 1.5))
        blocks.append(render.text_block(scene, contact, body_spec, big, ink, align="center", max_width=width * 0.92))
    total = sum(b.size[1] for b in blocks)
    scale = min(1.0, area_h * 0.95 / max(1, total), width * 0.96 / max(b.size[0] for b in blocks))
    y = (area_h - total * scale) / 2
    for b in blocks:
        doc.paste(b, (int((width - b.size[0] * scale) / 2), int(y)), scale)
        y += b.size[1] * scale
    if tabs is not None:
        count = int(rng.integers(4, 8))
        tab_w = width / count
        tab_size = max(7, int(min(tab_w * 0.55, size)))
        for i in range(count):
            x0 = int(i * tab_w)
            doc.draw.line((x0, area_h, x0, height), fill=_rgb(ink), width=1)
            strip = render.text_block(scene, [tabs], body_spec, tab_size, ink)
            strip.img = strip.img.rotate(90, expand=True)
            s = min(1.0, (tab_h - 4) / strip.size[1], (tab_w - 2) / strip.size[0])
            doc.paste(strip, (int(x0 + (tab_w - strip.size[0] * s) / 2), area_h + 2), s)
        doc.draw.line((0, area_h, width, area_h), fill=_rgb(ink), width=1)
    if chance(rng, 0.35):  # photographed on a noticeboard
        return _finish_on_desk(scene, doc, fill=(0.65, 0.95), scan_share=0.0, perspective_share=0.5)
    return render.defects(scene, doc.final(), photographed=False)


def flyer(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    who = content.person(rng, japanese)
    title = Line(pick(rng, FLYER_TITLES_JA if japanese else FLYER_TITLES_EN))
    pool = FLYER_DETAILS_JA if japanese else FLYER_DETAILS_EN
    details = [Line(pool[i]) for i in rng.choice(len(pool), int(rng.integers(1, 3)), replace=False)]
    phone = Line(who.mobile if japanese else who.phone, (content.PHONE,))
    r = rng.random()
    if r < 0.6:
        contact = [
            Line(
                f"{pick(rng, ('連絡先 ', 'TEL ', 'お問い合わせ ') if japanese else ('Call ', 'Text ', 'Call/Text '))}{phone.text}",
                (content.PHONE,),
            )
        ]
    elif r < 0.8:
        contact = [who.email_line(rng)]
    else:
        contact = [who.phone_line(rng), who.email_line(rng)]
    tabs = phone if chance(rng, 0.3) else None
    return _poster(scene, title, details, contact, japanese, tabs)


def poster_ham(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.poster(rng, japanese)
    return _poster(scene, lines[0], lines[1:], [], japanese, None)


# ---------------------------------------------------------------------------------------------
# Text on photos and bare lines


def _on_photo(scene: Scene, lines: Sequence[Line], japanese: bool, small: bool) -> Image.Image:
    rng = scene.rng
    spec = scene.font(_script(japanese))
    size = _size(scene, spec, japanese, rel=0.8 if small else float(rng.uniform(1.0, 1.5)))
    style = rng.random()
    max_width = 0 if small else DOC_MAX_W * 0.8
    if small:
        width, height = render.random_size(rng, 160, render.MAX_SIDE)
    else:
        width, height, f = render.frame(
            rng, *render.measure_block(lines, spec, size, max_width=max_width), float(rng.uniform(0.3, 0.9))
        )
    img = scene.photo(width, height)
    # Light text on dark photos and dark on light, mostly; outlines and plates keep the rest
    # legible.
    light_text = render.luma(img) < 128 if chance(rng, 0.85) else chance(rng, 0.5)
    ink = tuple(rng.uniform(225, 255, 3)) if light_text else tuple(rng.uniform(0, 40, 3))
    outline = (0, 0, 0) if light_text else (255, 255, 255)
    plate = None
    stroke = 0
    if style < 0.4:
        stroke = max(1, size // 12)
    elif style < 0.75:
        alpha = int(rng.integers(120, 220))
        plate = (0, 0, 0, alpha) if light_text else (255, 255, 255, alpha)
    block = render.text_block(
        scene,
        lines,
        spec,
        size,
        ink,
        plate=plate,
        stroke=stroke,
        stroke_fill=outline,
        max_width=max_width,
        align=pick(rng, ("left", "center")),
    )
    if not small:
        render.place(scene, img, block, fill=(f, f), angle=scene.angle() * 0.6, perspective_share=0.1)
    elif block.size[0] <= width - 16 and block.size[1] <= height - 16:
        # An incidental caption or stamp: at its own size, in a corner or along an edge.
        x = int(rng.choice([8, width - block.size[0] - 8]))
        y = int(rng.choice([8, height - block.size[1] - 8]))
        render.place(scene, img, block, fill=(1.0, 1.0), angle=0.0, perspective_share=0.0, at=(x, y))
    else:
        render.place(scene, img, block, fill=(0.9, 0.95), angle=0.0, perspective_share=0.0)
    return render.defects(scene, img, photographed=False)


def text_on_photo(scene: Scene) -> Image.Image:
    rng = scene.rng
    lines, lang = content.personal_lines(rng)
    return _on_photo(scene, lines, lang == "ja", small=False)


def photo_incidental_text(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.35)
    return _on_photo(scene, content.caption(rng, japanese), japanese, small=chance(rng, 0.7))


def bare_lines(scene: Scene) -> Image.Image:
    rng = scene.rng
    lines, lang = content.personal_lines(rng)
    japanese = lang == "ja"
    if chance(rng, 0.15):
        # The original demo layout: the lines filling an image of any size, however small.
        width, height = render.random_size(rng)
        img, on_photo = _background(scene, width, height)
        render.fill_text(scene, img, lines, japanese, on_photo)
        return img
    spec = scene.font(_script(japanese))
    size = _size(scene, spec, japanese, rel=float(rng.uniform(1.0, 1.8)))
    on_photo = chance(rng, 0.35)
    ink = tuple(rng.uniform(0, 70, 3))
    plate = (255, 255, 255, int(rng.integers(160, 235))) if on_photo else None
    block = render.text_block(
        scene, lines, spec, size, ink, plate=plate, max_width=DOC_MAX_W * 0.9, align=pick(rng, ("left", "center"))
    )
    width, height, f = render.frame(rng, *block.size, float(rng.uniform(0.5, 0.95)))
    if on_photo:
        img = scene.photo(width, height)
    else:
        img = (
            render.plain_background(rng, width, height)
            if chance(rng, 0.5)
            else render.paper_background(rng, width, height)
        )
        if render.luma(img) < 110:
            img = Image.eval(img, lambda v: 255 - v)
    render.place(scene, img, block, fill=(f, f), angle=scene.angle() * 0.5, perspective_share=0.0)
    return render.defects(scene, img, photographed=False)


def photo(scene: Scene) -> Image.Image:
    rng = scene.rng
    width, height = render.random_size(rng)
    img = scene.photo(width, height)
    return render.defects(scene, img, photographed=False) if chance(rng, 0.3) else img


# ---------------------------------------------------------------------------------------------
# Printed matter with no personal data


def _two_column(
    doc: Doc, y: float, x0: float, x1: float, line: Line, spec: FontSpec, size: int, ink: Sequence[float], leaders: bool
) -> None:
    left, _, right = line.text.partition("  ")
    doc.text((x0, y), left, spec, size, ink)
    if right:
        w = doc.text((x1, y), right.strip(), spec, size, ink, anchor="ra")
        if leaders:
            lw = render.text_width(spec, size, left)
            dots_from, dots_to = x0 + lw + size * 0.4, x1 - w - size * 0.4
            dot = max(1, size // 10)
            for dx in np.arange(dots_from, dots_to, size * 0.5):
                doc.draw.ellipse((dx, y + size * 0.75, dx + dot, y + size * 0.75 + dot), fill=_rgb(ink))


def _printed(
    scene: Scene,
    lines: Sequence[Line],
    japanese: bool,
    styles: Sequence[str],
    paper: Colour | None,
    ink: Colour,
    columns: bool,
    leaders: bool = False,
    title_scale: float = 1.5,
    width_chars: float = 0.0,
    footer: float = 0.0,
) -> Doc:
    """A printed sheet: the first line a centred title, the rest left (or, with `columns`,
    split at a double space into a left part and a right-aligned part), and `footer` times
    its height left blank at the bottom, for a barcode."""
    rng = scene.rng
    spec = scene.font(_script(japanese), styles)
    head = scene.font(_script(japanese), ("display", "sans", "serif")) if chance(rng, 0.5) else spec
    size = _size(scene, spec, japanese)
    gap = float(rng.uniform(1.3, 1.6))
    pad_ratio = float(rng.uniform(1.0, 1.8))

    def layout(size: int) -> tuple[list[Line], int, int, int]:
        head_size = int(size * title_scale)
        body = (
            list(lines[1:])
            if columns
            else [p for ln in lines[1:] for p in render.wrap(spec, size, ln, DOC_MAX_W * 0.9)]
        )
        widths = [render.text_width(spec, size, ln.text) for ln in body] or [0.0]
        inner = max(
            max(widths) * (1.25 if columns else 1.0),
            render.text_width(head, head_size, lines[0].text),
            width_chars * size,
        )
        pad = int(size * pad_ratio)
        return (
            body,
            head_size,
            int(inner + 2 * pad),
            int((head_size * 1.8 + len(body) * size * gap + 2 * pad) * (1 + footer)),
        )

    body, head_size, width, height = layout(size)
    # Drawn no larger than a canvas can show, rather than drawn large and shrunk.
    fit = min(1.0, DOC_MAX_W / width, DOC_MAX_H / height)
    if fit < 0.97:
        size = max(6, int(size * fit))
        body, head_size, width, height = layout(size)
    pad = int(size * pad_ratio)
    doc = _new(scene, width, height, paper or (0, 0, 0), alpha=255 if paper else 0)
    doc.text((width / 2, pad), lines[0], head, head_size, ink, anchor="ma")
    y = pad + head_size * 1.8
    for line in body:
        if columns:
            _two_column(doc, y, pad, width - pad, line, spec, size, ink, leaders)
        else:
            doc.text((pad, y), line, spec, size, ink)
        y += size * gap
    return doc


def menu(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.menu(rng, japanese)
    board = chance(rng, 0.35)
    if board:  # a chalkboard
        paper, ink, styles = (
            tuple(rng.uniform(20, 55, 3)),
            tuple(rng.uniform(215, 255, 3)),
            ("hand", "brush", "display", "sans"),
        )
    else:
        paper, ink, styles = (
            tuple(rng.uniform(*r) for r in render.PAPER_TINTS["cream"]),
            tuple(rng.uniform(0, 60, 3)),
            ("serif", "sans", "display", "brush" if japanese else "serif"),
        )
    doc = _printed(scene, lines, japanese, styles, paper, ink, columns=True, leaders=chance(rng, 0.5))
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.3)


def receipt(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.receipt(rng, japanese)
    paper = tuple(rng.uniform(240, 255) for _ in range(3))
    ink = tuple(rng.uniform(20, 90, 3))
    # A barcode under the totals, as on most till receipts.
    doc = _printed(
        scene,
        lines,
        japanese,
        ("mono", "sans"),
        paper,
        ink,
        columns=True,
        title_scale=1.3,
        width_chars=14,
        footer=1 / 6,
    )
    w, h = doc.size
    top = h * 6 / 7
    render.barcode(rng, doc.draw, (w * 0.15, top, w * 0.85, top + h / 8 * 6 / 7), ink)
    return _finish_on_desk(scene, doc, fill=(0.5, 0.95), scan_share=0.3)


def timetable(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.timetable(rng, japanese)
    if chance(rng, 0.55):  # an LED departure board
        board, ink = (10, 10, 12), pick(rng, ((255, 170, 40), (120, 255, 120), (240, 240, 240)))
        doc = _printed(scene, lines, japanese, ("mono", "sans"), board, ink, columns=False, title_scale=1.2)
        if chance(rng, 0.5):
            canvas_w, canvas_h = render.canvas_around(rng, *doc.size, fill=(0.6, 0.95))
            canvas = scene.photo(canvas_w, canvas_h)
            render.place(scene, canvas, doc, fill=(0.6, 0.95), perspective_share=0.4)
            return render.defects(scene, canvas, photographed=True)
        return render.defects(scene, doc.final(), photographed=False)
    doc = _printed(
        scene, lines, japanese, ("sans", "mono"), (250, 250, 248), (20, 20, 20), columns=False, title_scale=1.3
    )
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.3)


def news(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.news(rng, japanese)
    doc = _printed(
        scene,
        lines,
        japanese,
        ("serif", "sans"),
        tuple(rng.uniform(*r) for r in render.PAPER_TINTS["white"]),
        (20, 20, 20),
        columns=False,
        title_scale=1.6,
    )
    if chance(rng, 0.4):
        w, h = doc.size
        photo_h = int(w * 0.5)
        page = _new(scene, w, h + photo_h, (250, 250, 250), alpha=255)
        page.img.paste(scene.photo(w, photo_h), (0, 0))
        page.paste(doc, (0, photo_h))
        doc = page
    return _finish_on_desk(scene, doc, fill=(0.65, 0.97), scan_share=0.45)


def poem(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.poem(rng, japanese)
    spec = scene.font(_script(japanese), ("serif", "hand", "brush", "sans"))
    size = _size(scene, spec, japanese, rel=float(rng.uniform(1.0, 1.5)))
    if japanese and chance(rng, 0.4):  # a tanzaku strip, written top to bottom
        size = min(size, int(DOC_MAX_H / (sum(len(ln.text) for ln in lines) * 1.05 + len(lines) * 0.4 + 2)))
        height = int(sum(len(ln.text) for ln in lines) * size * 1.05 + len(lines) * size * 0.4 + size * 2)
        width = int(size * 2.2)
        doc = Doc(
            scene,
            render.paper_background(
                rng, width, height, tint=str(rng.choice(["cream", "white", "pink", "blue"])), ruled=False
            ).convert("RGBA"),
        )
        y = float(size)
        for line in lines:
            y = _vertical(doc, width / 2, y, line, spec, size, (20, 20, 20)) + size * 0.4
        return _finish_on_desk(scene, doc, fill=(0.5, 0.9), scan_share=0.2)
    max_width = DOC_MAX_W * 0.8
    width, height, f = render.frame(
        rng, *render.measure_block(lines, spec, size, 1.6, max_width), float(rng.uniform(0.4, 0.85))
    )
    img, on_photo = _background(scene, width, height)
    dark = render.luma(img) < 120
    ink = render.ink_for(render.luma(img), rng)
    block = render.text_block(
        scene,
        lines,
        spec,
        size,
        ink,
        align=pick(rng, ("center", "left")),
        gap=1.6,
        max_width=max_width,
        stroke=1 if on_photo else 0,
        stroke_fill=(0, 0, 0) if dark else (255, 255, 255),
    )
    render.place(scene, img, block, fill=(f, f), angle=scene.angle() * 0.3, perspective_share=0.0)
    return render.defects(scene, img, photographed=on_photo)


def product_label(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.5)
    lines = content.product_label(rng, japanese)
    code = next((ln for ln in lines if ln.text.isdigit() and len(ln.text) == 13), None)
    text = [ln for ln in lines if ln is not code]
    paper = tuple(rng.uniform(235, 255, 3)) if chance(rng, 0.7) else tuple(rng.uniform(120, 240, 3))
    doc = _printed(
        scene, text, japanese, ("sans", "mono", "serif"), paper, (20, 20, 20), columns=False, title_scale=1.4
    )
    if code is not None:
        w, h = doc.size
        spec = scene.font("latin", ("mono", "sans"))
        size = max(8, int(w / 16))
        bar_h = int(w * 0.25)
        taller = _new(scene, w, h + bar_h + size * 2, paper, alpha=255)
        taller.paste(doc, (0, 0))
        taller.draw.rectangle((w * 0.1 - 4, h, w * 0.9 + 4, h + bar_h + size * 1.6), fill=(255, 255, 255, 255))
        render.barcode(rng, taller.draw, (w * 0.1, h + 4, w * 0.9, h + bar_h), (0, 0, 0))
        taller.text((w / 2, h + bar_h + 2), code, spec, size, (0, 0, 0), anchor="ma")
        doc = taller
    return _finish_on_desk(scene, doc, fill=(0.5, 0.92), scan_share=0.2)


def calendar(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.calendar(rng, japanese)
    spec = scene.font(_script(japanese), ("sans", "serif", "mono"))
    size = _size(scene, spec, japanese)
    cell = int(size * rng.uniform(1.9, 2.6))
    pad = size
    width = cell * 7 + 2 * pad
    weeks = lines[2:]
    height = int(size * 2.5 + cell * (len(weeks) + 1) + 2 * pad)
    doc = _new(scene, width, height, (252, 252, 250), alpha=255)
    doc.text((width / 2, pad), lines[0], spec, int(size * 1.5), (20, 20, 20), anchor="ma")
    top = pad + size * 2.5
    days = lines[1].text.split(" ")
    grid = (200, 200, 200, 255)
    for i, d in enumerate(days):
        doc.text(
            (pad + cell * (i + 0.5), top + cell / 2),
            d,
            spec,
            size,
            (200, 40, 40) if i == 0 else (40, 40, 40),
            anchor="mm",
        )
    for r, week in enumerate(weeks):
        cells = [week.text[i : i + 2] for i in range(0, len(week.text), 3)]
        for c, day in enumerate(cells):
            x, y = pad + cell * c, top + cell * (r + 1)
            doc.draw.rectangle((x, y, x + cell, y + cell), outline=grid, width=1)
            if day.strip():
                doc.text(
                    (x + cell * 0.12, y + cell * 0.1),
                    day.strip(),
                    spec,
                    size,
                    (200, 40, 40) if c == 0 else (30, 30, 30),
                )
    return _finish_on_desk(scene, doc, fill=(0.6, 0.95), scan_share=0.4)


def sports_score(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.4)
    lines = content.sports_score(rng, japanese)
    spec = scene.font(_script(japanese), ("sans", "mono", "display"))
    size = _size(scene, spec, japanese, rel=float(rng.uniform(1.0, 1.6)))
    board = (rng.uniform(0, 40), rng.uniform(0, 60), rng.uniform(20, 120))
    block = render.text_block(scene, lines, spec, size, (250, 250, 250), plate=(*_rgb(board), 235), gap=1.4)
    width, height = render.random_size(rng, 260, render.MAX_SIDE)
    img = scene.photo(width, height)
    if chance(rng, 0.5):  # a TV score overlay in a corner
        render.place(
            scene,
            img,
            block,
            fill=(0.3, 0.6),
            angle=0.0,
            perspective_share=0.0,
            at=(int(width * 0.03), int(height * 0.03)),
        )
        return render.defects(scene, img, photographed=False)
    render.place(scene, img, block, fill=(0.55, 0.9), perspective_share=0.4)
    return render.defects(scene, img, photographed=True)


SIGN_COLOURS = ((200, 30, 30), (20, 110, 60), (20, 60, 150), (250, 250, 250), (250, 200, 20), (30, 30, 30))


def sign(scene: Scene) -> Image.Image:
    rng = scene.rng
    japanese = chance(rng, 0.45)
    lines = content.sign(rng, japanese)
    panel = SIGN_COLOURS[int(rng.integers(len(SIGN_COLOURS)))]
    ink = (20, 20, 20) if float(np.mean(panel)) > 150 else (250, 250, 250)
    spec = scene.font(_script(japanese), ("sans", "display", "serif", "brush"))
    size = _size(scene, spec, japanese, rel=float(rng.uniform(1.2, 2.2)))
    block = render.text_block(
        scene, lines, spec, size, ink, plate=(*panel, 255), align="center", gap=1.35, heading=(spec, 1.3)
    )
    width, height = render.canvas_around(rng, *block.size, fill=(0.45, 0.85))
    img = scene.photo(width, height) if chance(rng, 0.75) else render.plain_background(rng, width, height)
    render.place(scene, img, block, fill=(0.45, 0.9), perspective_share=0.45, shadow=chance(rng, 0.3))
    return render.defects(scene, img, photographed=True)


def skin_blobs_photo(scene: Scene) -> Image.Image:
    width, height = render.random_size(scene.rng)
    return render.skin_blobs(scene.rng, width, height, scene.split, scene, on_photo=True)


def skin_blobs_plain(scene: Scene) -> Image.Image:
    width, height = render.random_size(scene.rng)
    return render.skin_blobs(scene.rng, width, height, scene.split, scene, on_photo=False)


Render = Callable[[Scene], Image.Image]
KINDS: dict[str, dict[str, Render]] = {
    "ham": {
        "photo": photo,
        "photo_incidental_text": photo_incidental_text,
        "menu": menu,
        "receipt": receipt,
        "timetable": timetable,
        "news": news,
        "poem": poem,
        "chat_ham": chat_ham,
        "product_label": product_label,
        "calendar": calendar,
        "sports_score": sports_score,
        "sign": sign,
        "note_ham": note_ham,
        "card_ham": card_ham,
        "form_blank": form_blank,
        "poster_ham": poster_ham,
        "social_post": social_post,
    },
    "sexual": {"skin_blobs_photo": skin_blobs_photo, "skin_blobs_plain": skin_blobs_plain},
    "personal_info": {
        "business_card": business_card,
        "contact_card": contact_card,
        "shipping_label": shipping_label,
        "chat_pi": chat_pi,
        "handwritten_note": handwritten_note,
        "jp_form": jp_form,
        "profile_bio": profile_bio,
        "flyer": flyer,
        "text_on_photo": text_on_photo,
        "bare_lines": bare_lines,
    },
}
# Screens are saved as PNG more often than photographs of paper are.
SCREENSHOT_KINDS = frozenset({"chat_pi", "chat_ham", "profile_bio", "social_post"})


def render_kind(scene: Scene, label: str, kind: str) -> Image.Image:
    img = KINDS[label][kind](scene)
    return img if img.mode == "RGB" else img.convert("RGB")
