"""The text reader's one settings record (flat, like every section of the server's config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReaderConfig:
    """The reader's settings: the server's `reader` section (--reader-<field>), and what a
    model version records it was fitted with."""

    enabled: bool = True
    # Regions tried for numbers written without a country code (libphonenumber codes).
    phone_regions: tuple[str, ...] = ("JP", "US", "GB")
    # Entity types that count towards personal_info here (empty: all). Others are still
    # reported, but the fusion sees them as absent.
    entity_types: tuple[str, ...] = ()
    # Read whatever the gate says when the CNN alone already scores personal_info this high:
    # a second way in for small text the gate misses. High, because each such read of a photo
    # costs a full detection pass: at 0.5, the demo model of 2026-12-04 sent 6 of the bench's
    # 24 photos (flowers, landscapes) to reading and the server fell from ~190 to 44 img/s.
    read_above_cnn: float = 0.9
    # Side of the gate's first, square look (a multiple of 32): 1.6 ms on a Zen 4 core, 3.0 at
    # 96, 5.8 at 128 (ocr.GATE_CONFIRM_SIDE, its second look, for what the first lets on).
    gate_side: int = 64
    # Share of the gate's first map above `gate_threshold` below which an image has no text.
    # Measured on 300 demo personal-data images and the bench's 24 photos (2026-12-04): at 64
    # pixels, probability > 0.05 let on 97.0 % of the former and 33 % of the latter (at 96:
    # 97.7 % and 25 %; > 0.3 at 96: 95.0 % and 16.7 %).
    gate_threshold: float = 0.05
    gate_area: float = 0.001
    # How line-like (detector score x elongation, 0..1) a box of the second look must be to
    # send an image to reading. Measured as above at 128 pixels: 0.3 passed 92.7 % of the
    # personal-data images and none of the photos (flowers and foliage fire the detector as
    # blobs); 0.2 passed 94.3 % and 8.3 %, and a photo read costs ~100 ms.
    gate_line: float = 0.3
    # Longest side of the image the reader crops lines from (recognition quality), and of
    # the detector's input (its cost: 640 is 100 ms on a 960x600 screenshot, 960 is 390 ms).
    read_side: int = 960
    det_side: int = 640
    det_threshold: float = 0.3
    box_threshold: float = 0.5
    unclip_ratio: float = 1.6
    min_line_score: float = 0.5
    # Lines per recognition call. On a CPU a batch saves nothing, even of lines sorted by width
    # across images (measured 2026-12-04 on 160 lines: 28.4 ms a line one by one, 28.1 in twos,
    # 34.3 in eights: padding to the widest line costs more than the calls saved), so batches
    # are small and within one image.
    rec_batch: int = 2
    # Per image: lines read at most (largest first) and CPU seconds for detection + recognition
    # (a line costs ~25 ms: 0.5 s is a card, a label or a short chat; a long chat runs over).
    max_lines: int = 24
    budget_s: float = 0.5
    model_dir: str = ""  # empty: the models inside the rapidocr package
