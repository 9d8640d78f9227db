"""The text reader with the real OCR engine: gate, detection, recognition, budget, findings,
and the fusion's record. Images are drawn here with the machine's fonts, so what is on them
is known."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from model.preprocess import decode_for_reading, decode_image
from model.reader.config import ReaderConfig
from model.reader.features import FEATURE_NAMES, READER_FEATURES
from model.reader.fusion import Fusion
from model.reader.reader import TextReader, counted_entities
from model.reader.types import EntityType, ReadingStatus
from server.pipeline.policy import Policy

NOTO = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


def render(lines: list[str], size: tuple[int, int] = (640, 400), font_size: int = 34) -> bytes:
    img = Image.new("RGB", size, (250, 250, 245))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(NOTO, font_size, index=0)
    y = 30
    for line in lines:
        draw.text((30, y), line, fill=(20, 20, 30), font=font)
        y += int(font_size * 1.6)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def photo_without_text(size: tuple[int, int] = (640, 480)) -> bytes:
    # Smooth gradients and blobs, like a sky or a wall: nothing a text detector should fire on.
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [120 + 80 * np.sin(xx / 90.0), 140 + 60 * np.cos(yy / 70.0), 160 + 40 * np.sin((xx + yy) / 150.0)], -1
    )
    out = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def reader() -> TextReader:
    r = TextReader(ReaderConfig())
    r.warm_up()
    return r


def assess(reader: TextReader, images: list[bytes], cnn: float = 0.0) -> list:
    small = [decode_image(data, (128, 128)) for data in images]
    return reader.assess(small, [cnn] * len(images), lambda i: decode_for_reading(images[i], reader.config.read_side))


def test_the_gate_skips_a_photo_without_text(reader):
    [result] = assess(reader, [photo_without_text()])
    assert result.status is ReadingStatus.SKIPPED
    assert result.lines == 0 and result.findings == ()
    # Only the gate ran: a few ms, against tens for a reading.
    assert result.cpu_ms < 30


def test_a_photo_the_cnn_suspects_is_read_whatever_the_gate_says(reader):
    [result] = assess(reader, [photo_without_text()], cnn=0.9)
    assert result.status is ReadingStatus.READ


def test_reads_a_japanese_phone_number_and_says_where_it_is(reader):
    data = render(["お問い合わせ", "電話 090-1234-5678"])
    [result] = assess(reader, [data])
    assert result.status is ReadingStatus.READ
    assert result.lines >= 2
    phones = [f for f in result.findings if f.entity is EntityType.PHONE]
    assert phones, result
    x0, y0, x1, y1 = phones[0].box
    # The number is on the second line: below the first ~20 % of the image, left half onwards.
    assert 0.15 < y0 < y1 < 0.5 and x0 < 0.5 < x1
    assert "1234" not in phones[0].masked and "5678" not in phones[0].masked


def test_reads_an_english_card_with_email_and_phone(reader):
    data = render(["Jason Moore", "Tel (769) 555-0156", "jason.moore@example.com"])
    [result] = assess(reader, [data])
    kinds = {f.entity for f in result.findings}
    assert {EntityType.PHONE, EntityType.EMAIL} <= kinds, result


def test_a_menu_with_prices_and_times_has_no_findings(reader):
    data = render(["Lunch 11:30-14:00", "Ramen ¥1,280", "Gyoza 6 pcs ¥480", "Total ¥1,760"])
    [result] = assess(reader, [data])
    assert result.status is ReadingStatus.READ and result.lines >= 3
    assert result.findings == (), result.findings


def test_batches_several_images_and_keeps_each_its_own_findings(reader):
    images = [render(["TEL 03-5555-0123"]), photo_without_text(), render(["mail: hanako@example.jp"])]
    results = assess(reader, images)
    assert [r.status for r in results] == [ReadingStatus.READ, ReadingStatus.SKIPPED, ReadingStatus.READ]
    assert {f.entity for f in results[0].findings} == {EntityType.PHONE}
    assert {f.entity for f in results[2].findings} == {EntityType.EMAIL}


def test_a_reading_over_its_line_budget_is_review_never_pass():
    tight = TextReader(dataclasses.replace(ReaderConfig(), max_lines=1))
    [result] = assess(tight, [render(["one line", "another line", "third line"])])
    assert result.status is ReadingStatus.BUDGET_EXCEEDED
    policy = Policy(["ham", "sexual", "personal_info"], "ham", {}, {})
    decision, reasons = policy.explain({"ham": 0.99, "sexual": 0.0, "personal_info": 0.01}, result)
    assert decision.name == "REVIEW"
    assert "reading:budget_exceeded" in reasons


def test_a_reading_over_its_time_budget_is_review_never_pass():
    slow = TextReader(dataclasses.replace(ReaderConfig(), budget_s=1e-6))
    [result] = assess(slow, [render(["line one", "line two"])])
    assert result.status is ReadingStatus.BUDGET_EXCEEDED


def test_entity_types_that_do_not_count_are_reported_but_not_fed_to_the_fusion():
    config = dataclasses.replace(ReaderConfig(), entity_types=("EMAIL",))
    assert counted_entities(config) == {EntityType.EMAIL}
    only_email = TextReader(config)
    [result] = assess(only_email, [render(["TEL 090-1234-5678"])])
    assert any(f.entity is EntityType.PHONE for f in result.findings)
    features = dict(zip(READER_FEATURES, result.features, strict=True))
    assert features["max_phone"] == 0.0 and features["count_phone"] == 0.0
    with pytest.raises(ValueError, match="unknown"):
        counted_entities(dataclasses.replace(ReaderConfig(), entity_types=("SSN",)))


def test_the_fusion_round_trips_and_refuses_other_features():
    n = len(FEATURE_NAMES)
    rng = np.random.default_rng(0)
    fusion = Fusion(FEATURE_NAMES, tuple([0.0] * n), tuple([1.0] * n), tuple(rng.normal(size=n).tolist()), 0.3)
    again = Fusion.from_dict(fusion.to_dict())
    x = rng.normal(size=(5, n))
    np.testing.assert_allclose(fusion.probability(x), again.probability(x))
    data = fusion.to_dict()
    data["feature_names"] = data["feature_names"][::-1]
    with pytest.raises(ValueError, match="other features"):
        Fusion.from_dict(data)


def test_reads_personal_data_on_the_held_out_generator_images(reader):
    """The reader with the real OCR on images drawn with fonts and backgrounds the training
    data never used: most personal-data images yield a finding, few text negatives do."""
    from training import benchmark_data

    def findings_share(label: str, count: int) -> float:
        hits = total = 0
        for index in range(count * 4):
            data, _, kind = benchmark_data.generate(5, label, index, count * 4)
            if kind in ("standard", "photo") or total == count:
                continue
            total += 1
            [result] = assess(reader, [data])
            hits += bool(result.findings)
        assert total == count
        return hits / total

    assert findings_share("personal_info", 12) >= 0.6
    assert findings_share("ham", 12) <= 0.25
