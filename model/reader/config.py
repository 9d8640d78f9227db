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
    # a second way in for text the small gate misses.
    read_above_cnn: float = 0.5
    # Side of the gate's square input. 96: 3 ms on a Zen 4 core, against 6 ms at 128; on the demo
    # data the gate sent 95 % of personal-data images to reading at 96 and 98 % at 128.
    gate_side: int = 96
    # Share of the gate's map above `det_threshold` from which an image is read. The map is
    # 96x96, so 0.0005 is about five pixels: a single short word at that scale.
    gate_area: float = 0.0005
    # Longest side for detection; text below ~8 pixels high at this size is not found.
    read_side: int = 960
    det_threshold: float = 0.3
    box_threshold: float = 0.5
    unclip_ratio: float = 1.6
    min_line_score: float = 0.5
    rec_batch: int = 8
    # Per image: lines read at most (largest first) and CPU seconds for detection + recognition.
    max_lines: int = 40
    budget_s: float = 0.4
    model_dir: str = ""  # empty: the models inside the rapidocr package
