"""The OCR engine: PP-OCRv6 small detection and recognition (the ONNX files inside the
`rapidocr` wheel), run on ONNX Runtime sessions of our own, single-threaded like the CNN's.

Three steps, so that cost follows content:

1. `gate`: the detector over the image the CNN already has (128x128), shrunk to `gate_side`.
   Its text-probability map says whether there is text worth reading; on a photo without text
   this is the whole cost of the reader (a few ms, about the CNN's own).
2. `detect`: the detector at reading size (`read_side`, aspect kept) finds line boxes.
3. `recognize`: the recogniser reads the line crops, batched across all the images of a worker
   batch (sorted by width so that padding is small), within each image's budget of lines and
   CPU time. An image whose lines were not all read is `BUDGET_EXCEEDED`, which the decision
   policy never lets PASS.

rapidocr's own pipeline object is not used: it loads its models lazily behind locks, sizes the
detector by the short side (upscaling small images, 1.1 s for a 400-pixel card) and has one
limit for all images. Its pre- and post-processing pieces (DB box extraction, CTC decoding,
perspective crops) are used as they are, which is why the dependency is pinned exactly."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from rapidocr.ch_ppocr_det.utils import DBPostProcess
from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode
from rapidocr.utils.process_img import get_rotate_crop_image

from model.reader.config import ReaderConfig
from model.reader.types import Box, ReadingStatus, TextLine

ENGINE_NAME = "rapidocr-3.10.0/PP-OCRv6-small"
DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
# The recogniser's input height and its default width (PaddleOCR's rec_image_shape).
REC_HEIGHT, REC_WIDTH = 48, 320


def default_model_dir() -> Path:
    return Path(str(resources.files("rapidocr") / "models"))


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread per session, as for the CNN: parallelism comes from worker processes.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The detector's input shape changes with every image: an arena would keep the largest
    # activations of any image alive for the life of the worker.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class RawReading:
    """What the OCR made of one image. `lines` holds the text read: it stays in the worker
    process (recognizers turn it into findings there) and is never sent, logged or stored."""

    status: ReadingStatus
    gate_score: float
    lines: tuple[TextLine, ...] = ()
    detected: int = 0
    cpu_s: float = 0.0


class OcrEngine:
    def __init__(self, config: ReaderConfig):
        self.config = config
        model_dir = Path(config.model_dir) if config.model_dir else default_model_dir()
        self._det = _session(model_dir / DET_MODEL)
        self._det_input = self._det.get_inputs()[0].name
        self._rec = _session(model_dir / REC_MODEL)
        self._rec_input = self._rec.get_inputs()[0].name
        characters = self._rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._decode = CTCLabelDecode(character=characters)
        self._boxes = DBPostProcess(
            thresh=config.det_threshold,
            box_thresh=config.box_threshold,
            max_candidates=1000,
            unclip_ratio=config.unclip_ratio,
            use_dilation=True,
            score_mode="fast",
        )

    def warm_up(self) -> None:
        """One pass through each session, so the first request does not pay for ONNX Runtime's
        lazy kernel set-up (about 100 ms)."""
        self.gate(np.zeros((128, 128, 3), np.uint8))
        crop = np.full((REC_HEIGHT, REC_WIDTH, 3), 255, np.uint8)
        self._recognize_batch([crop])

    # -- 1. gate ----------------------------------------------------------------------------
    def gate(self, image: np.ndarray) -> float:
        """Share of the gate map that looks like text, for the (small) RGB image the CNN had."""
        side = self.config.gate_side
        if image.shape[0] != side or image.shape[1] != side:
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        probability = self._det.run(None, {self._det_input: _det_tensor(image)})[0]
        return float((probability > self.config.det_threshold).mean())

    def wants_reading(self, gate_score: float) -> bool:
        return gate_score >= self.config.gate_area

    # -- 2. detect --------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Line quadrilaterals (n, 4, 2) in `image` pixels, largest first, and their scores."""
        height, width = image.shape[:2]
        scale = min(1.0, self.config.read_side / max(height, width))
        det_h = max(32, round(height * scale / 32) * 32)
        det_w = max(32, round(width * scale / 32) * 32)
        resized = cv2.resize(image, (det_w, det_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        probability = self._det.run(None, {self._det_input: _det_tensor(resized)})[0]
        boxes, scores = self._boxes(probability, (height, width))
        if len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32), []
        areas = [cv2.contourArea(box.astype(np.float32)) for box in boxes]
        order = np.argsort(areas)[::-1]
        return np.asarray(boxes, np.float32)[order], [float(scores[i]) for i in order]

    # -- 3. recognise ------------------------------------------------------------------------
    def _recognize_batch(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        ratios = [crop.shape[1] / max(1, crop.shape[0]) for crop in crops]
        max_ratio = max(REC_WIDTH / REC_HEIGHT, *ratios)
        width = math.ceil(REC_HEIGHT * max_ratio)
        batch = np.zeros((len(crops), 3, REC_HEIGHT, width), np.float32)
        for i, crop in enumerate(crops):
            crop_w = min(width, math.ceil(REC_HEIGHT * ratios[i]))
            resized = cv2.resize(crop, (max(1, crop_w), REC_HEIGHT)).astype(np.float32)
            batch[i, :, :, :crop_w] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        predictions = self._rec.run(None, {self._rec_input: batch})[0]
        results, _ = self._decode(predictions, False, wh_ratio_list=ratios, max_wh_ratio=max_ratio)
        return [(text, float(score)) for text, score in results]

    def read(self, images: Sequence[np.ndarray], gate_scores: Sequence[float]) -> list[RawReading]:
        """Detects and recognises the lines of each image (RGB, reading size), sharing the
        recogniser's batches across images. Each image's CPU time is its own detection plus its
        share of every recognition batch it had crops in."""
        config = self.config
        spent = [0.0] * len(images)
        detected = [0] * len(images)
        crops: list[tuple[int, np.ndarray, Box]] = []
        truncated = [False] * len(images)
        for index, image in enumerate(images):
            start = time.process_time()
            quads, _ = self.detect(image)
            detected[index] = len(quads)
            if len(quads) > config.max_lines:
                truncated[index] = True
                quads = quads[: config.max_lines]
            height, width = image.shape[:2]
            for quad in quads:
                crop = get_rotate_crop_image(image, quad.copy())
                if crop.shape[0] < 2 or crop.shape[1] < 2:
                    continue
                crops.append((index, crop, _normalised_box(quad, width, height)))
            spent[index] += time.process_time() - start
            if spent[index] > config.budget_s:
                truncated[index] = True

        lines: list[list[tuple[int, TextLine]]] = [[] for _ in images]
        order = sorted(range(len(crops)), key=lambda i: crops[i][1].shape[1] / max(1, crops[i][1].shape[0]))
        position = 0
        while position < len(order):
            chunk: list[int] = []
            while position < len(order) and len(chunk) < config.rec_batch:
                i = order[position]
                position += 1
                owner = crops[i][0]
                if spent[owner] > config.budget_s:
                    truncated[owner] = True
                    continue
                chunk.append(i)
            if not chunk:
                continue
            start = time.process_time()
            results = self._recognize_batch([crops[i][1] for i in chunk])
            share = (time.process_time() - start) / len(chunk)
            for i, (text, score) in zip(chunk, results, strict=True):
                owner, _, box = crops[i]
                spent[owner] += share
                if score >= config.min_line_score and text.strip():
                    lines[owner].append((i, TextLine(text=text, score=score, box=box)))

        readings = []
        for index in range(len(images)):
            # Reading order (top to bottom, then left to right), which the recognizers' row
            # grouping and cue-word look-back assume.
            ordered = sorted(lines[index], key=lambda item: (round(item[1].box[1], 2), item[1].box[0]))
            readings.append(
                RawReading(
                    status=ReadingStatus.BUDGET_EXCEEDED if truncated[index] else ReadingStatus.READ,
                    gate_score=gate_scores[index],
                    lines=tuple(line for _, line in ordered),
                    detected=detected[index],
                    cpu_s=spent[index],
                )
            )
        return readings


def _det_tensor(image: np.ndarray) -> np.ndarray:
    # PaddleOCR's detector normalisation: mean 0.5, std 0.5 on 0..1 pixels, NCHW.
    return (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[np.newaxis]


def _normalised_box(quad: np.ndarray, width: int, height: int) -> Box:
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    return (
        float(np.clip(x0 / width, 0, 1)),
        float(np.clip(y0 / height, 0, 1)),
        float(np.clip(x1 / width, 0, 1)),
        float(np.clip(y1 / height, 0, 1)),
    )
