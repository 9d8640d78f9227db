"""The one interface the worker (and training) use: `TextReader.assess` takes a batch of images
the CNN has scored and returns what the reader made of each, with the fused personal_info
probability when the version has a fusion.

The personal text never leaves this module: the OCR lines become findings (masked), cue
categories and feature numbers here, inside the worker process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from model.reader.config import ReaderConfig
from model.reader.features import ENTITIES, fusion_vector, reader_vector
from model.reader.fusion import Fusion
from model.reader.ocr import ENGINE_NAME, Gate, OcrEngine, RawReading
from model.reader.recognizers import RecognizerConfig, recognize
from model.reader.types import EntityType, ReadingResult, ReadingStatus

log = logging.getLogger(__name__)


def counted_entities(config: ReaderConfig) -> frozenset[EntityType]:
    if not config.entity_types:
        return frozenset(ENTITIES)
    try:
        return frozenset(EntityType[name.strip().upper()] for name in config.entity_types)
    except KeyError as exc:
        known = ", ".join(e.value for e in ENTITIES)
        raise ValueError(f"reader entity_types: unknown {exc.args[0]!r} (known: {known})") from None


def settings(config: ReaderConfig) -> dict:
    """What a model version records about the reader it was fitted with."""
    return {
        "engine": ENGINE_NAME,
        "languages": ["en", "ja"],
        "entity_types": sorted(e.value for e in counted_entities(config)),
        "phone_regions": list(config.phone_regions),
        "gate_side": config.gate_side,
        "gate_area": config.gate_area,
        "gate_line": config.gate_line,
        "det_side": config.det_side,
        "read_side": config.read_side,
        "max_lines": config.max_lines,
        "budget_s": config.budget_s,
    }


class TextReader:
    def __init__(self, config: ReaderConfig, fusion: Fusion | None = None, class_index: int = -1):
        self.config = config
        self.fusion = fusion
        # Column of personal_info in the CNN's scores (for the worker; training passes scores itself).
        self.class_index = class_index
        self.counted = counted_entities(config)
        self._recognizers = RecognizerConfig(phone_regions=tuple(config.phone_regions))
        self._ocr = OcrEngine(config)

    def warm_up(self) -> None:
        self._ocr.warm_up()

    # The steps of `assess` one image at a time, for training (training/reading.py), which
    # caches them per image; the server uses `assess`, which batches.
    def gate(self, small: np.ndarray) -> Gate:
        return self._ocr.gate(small)

    def empty_vector(self, status: ReadingStatus, gate_score: float) -> np.ndarray:
        return reader_vector(status, gate_score, (), (), (), self.counted)

    def read_vector(self, image: np.ndarray, gate: Gate) -> np.ndarray:
        raw = self._ocr.read([image], [gate])[0]
        recognized = recognize(raw.lines, self._recognizers) if raw.lines else None
        findings = recognized.findings if recognized else ()
        cues = recognized.cues if recognized else ()
        return reader_vector(raw.status, raw.gate_score, raw.lines, findings, cues, self.counted)

    def assess(
        self,
        small: Sequence[np.ndarray],
        cnn_personal_info: Sequence[float],
        load: Callable[[int], np.ndarray],
    ) -> list[ReadingResult]:
        """`small`: the images as the CNN saw them; `load(i)`: image i at reading size (decoded
        only for images the gate lets through; an ImageError there makes that reading FAILED)."""
        start = time.process_time()
        gates = [self._ocr.gate(image) for image in small]
        gate_cpu = (time.process_time() - start) / max(1, len(small))
        wanted = [i for i, g in enumerate(gates) if g.read or cnn_personal_info[i] >= self.config.read_above_cnn]
        raws: dict[int, RawReading] = {}
        loaded: list[tuple[int, np.ndarray]] = []
        for i in wanted:
            try:
                loaded.append((i, load(i)))
            except Exception as exc:  # one image's reading, never the batch
                log.warning("reader: image %d could not be decoded for reading: %s", i, type(exc).__name__)
                raws[i] = RawReading(ReadingStatus.FAILED, gates[i].score)
        if loaded:
            try:
                for (i, _), raw in zip(
                    loaded, self._ocr.read([img for _, img in loaded], [gates[i] for i, _ in loaded]), strict=True
                ):
                    raws[i] = raw
            except Exception as exc:  # the CNN's scores still stand; REVIEW, not PASS
                log.error("reader: OCR failed on a batch of %d: %s", len(loaded), type(exc).__name__)
                for i, _ in loaded:
                    raws[i] = RawReading(ReadingStatus.FAILED, gates[i].score)
        results = []
        for i, gate in enumerate(gates):
            raw = raws.get(i, RawReading(ReadingStatus.SKIPPED, gate.score))
            results.append(self._result(raw, float(cnn_personal_info[i]), gate_cpu))
        return results

    def _result(self, raw: RawReading, cnn_pi: float, gate_cpu: float) -> ReadingResult:
        recognized = recognize(raw.lines, self._recognizers) if raw.lines else None
        findings = recognized.findings if recognized else ()
        cues = recognized.cues if recognized else ()
        vector = reader_vector(raw.status, raw.gate_score, raw.lines, findings, cues, self.counted)
        fused = None
        if self.fusion is not None:
            fused = float(self.fusion.probability(fusion_vector(cnn_pi, vector)[np.newaxis])[0])
        return ReadingResult(
            status=raw.status,
            gate_score=raw.gate_score,
            findings=findings,
            cue_categories=tuple(sorted({c.category for c in cues})),
            lines=len(raw.lines),
            cpu_ms=1000.0 * (raw.cpu_s + gate_cpu),
            cnn_personal_info=cnn_pi,
            fused=fused is not None,
            fused_personal_info=fused if fused is not None else cnn_pi,
            features=tuple(float(v) for v in vector),
        )
