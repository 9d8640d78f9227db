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


# The gate's second look, at the CNN's own input size.
GATE_CONFIRM_SIDE = 128
# Around the gate's region, as a share of the image's width and height: its boxes are coarse.
GATE_MARGIN = 0.08
# Below this share of the image, detection searches the gate's region only.
GATE_CROP_SHARE = 0.5


@dataclass(frozen=True)
class Gate:
    """What the gate saw: `score`, how line-like the most line-like thing was (0..1); `read`,
    whether that is enough to read; `region`, where the line-like things were (fractions)."""

    score: float
    read: bool
    region: Box | None = None


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
        # The gate's boxes: no dilation, which at 128 pixels would merge neighbouring lines.
        self._gate_boxes = _box_finder(config, max_candidates=100, dilate=False)
        self._boxes = _box_finder(config, max_candidates=1000, dilate=True)

    def warm_up(self) -> None:
        """One pass through each session, so the first request does not pay for ONNX Runtime's
        lazy kernel set-up (about 100 ms)."""
        self.gate(np.zeros((128, 128, 3), np.uint8))
        crop = np.full((REC_HEIGHT, REC_WIDTH, 3), 255, np.uint8)
        self._recognize_batch([crop])

    # -- 1. gate ----------------------------------------------------------------------------
    def _map(self, image: np.ndarray, side: int) -> np.ndarray:
        if image.shape[0] != side or image.shape[1] != side:
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        return self._det.run(None, {self._det_input: _det_tensor(image)})[0]

    def _lines_in(self, probability: np.ndarray) -> tuple[float, Box | None]:
        """(line-likeness 0..1, the region holding the line-like boxes) of a small text map.

        Text lines are long and thin even at 96 pixels; what else a detector fires on at that
        size (petals, foliage, fabric) comes out as blobs. So the score is the best box's
        detector score times its elongation (length / height, counted up to 4)."""
        side = probability.shape[-1]
        boxes, scores = self._gate_boxes(probability, (probability.shape[-2], side))
        best, region = 0.0, None
        for box, score in zip(boxes, scores, strict=True):
            sides = (float(np.linalg.norm(box[0] - box[1])), float(np.linalg.norm(box[0] - box[3])))
            length, thickness = max(sides), max(1.0, min(sides))
            likeness = float(score) * min(length / thickness, 4.0) / 4.0
            best = max(best, likeness)
            if likeness >= self.config.gate_line:
                bounds = normalised_box(box.astype(np.float32), side, probability.shape[-2])
                region = bounds if region is None else _union(region, bounds)
        return best, region

    def gate(self, image: np.ndarray) -> Gate:
        """Whether the (small) RGB image the CNN had shows text worth reading, and where.

        Two looks, so that a photo without text mostly costs one detector pass at
        `gate_side`: a share below `gate_area` of pixels the detector gives more than
        `gate_threshold` there ends it (a low threshold: small text is faint at 64 pixels);
        otherwise the detector looks again at 128 pixels, where lines of small text separate
        from texture, and line-like boxes send the image to reading."""
        config = self.config
        first = self._map(image, config.gate_side)
        if float((first > config.gate_threshold).mean()) < config.gate_area:
            return Gate(0.0, False, None)
        score, region = self._lines_in(self._map(image, GATE_CONFIRM_SIDE))
        return Gate(score, score >= config.gate_line, region)

    # -- 2. detect --------------------------------------------------------------------------
    def detect(self, image: np.ndarray, region: Box | None = None) -> tuple[np.ndarray, list[float]]:
        """Line quadrilaterals (n, 4, 2) in `image` pixels, largest first, and their scores.

        With a `region` (fractions, from the gate) that covers well under the whole image, only
        that part, with a margin, is searched: a sign on a photo costs a fraction of the
        detector's full-image pass. The detector runs at the same scale either way."""
        height, width = image.shape[:2]
        x0, y0 = 0, 0
        if region is not None:
            mx, my = GATE_MARGIN * width, GATE_MARGIN * height
            left, top = max(0, int(region[0] * width - mx)), max(0, int(region[1] * height - my))
            right, bottom = min(width, int(region[2] * width + mx)), min(height, int(region[3] * height + my))
            if (right - left) * (bottom - top) < GATE_CROP_SHARE * width * height:
                image, x0, y0 = image[top:bottom, left:right], left, top
        part_h, part_w = image.shape[:2]
        scale = min(1.0, self.config.det_side / max(height, width))
        det_h = max(32, round(part_h * scale / 32) * 32)
        det_w = max(32, round(part_w * scale / 32) * 32)
        resized = cv2.resize(image, (det_w, det_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        probability = self._det.run(None, {self._det_input: _det_tensor(resized)})[0]
        boxes, scores = self._boxes(probability, (part_h, part_w))
        if len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32), []
        quads = np.asarray(boxes, np.float32) + np.array([x0, y0], np.float32)
        areas = [cv2.contourArea(quad) for quad in quads]
        order = np.argsort(areas)[::-1]
        return quads[order], [float(scores[i]) for i in order]

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

    def read(self, images: Sequence[np.ndarray], gates: Sequence[Gate]) -> list[RawReading]:
        """Detects and recognises the lines of each image (RGB, reading size), each within its
        own budget of lines and CPU time (detection and recognition)."""
        config = self.config
        spent = [0.0] * len(images)
        detected = [0] * len(images)
        crops: list[tuple[int, np.ndarray, Box]] = []
        truncated = [False] * len(images)
        for index, image in enumerate(images):
            start = time.process_time()
            quads, _ = self.detect(image, gates[index].region)
            detected[index] = len(quads)
            if len(quads) > config.max_lines:
                truncated[index] = True
                quads = quads[: config.max_lines]
            height, width = image.shape[:2]
            for quad in quads:
                crop = get_rotate_crop_image(image, quad.copy())
                if crop.shape[0] < 2 or crop.shape[1] < 2:
                    continue
                crops.append((index, crop, normalised_box(quad, width, height)))
            spent[index] += time.process_time() - start
            if spent[index] > config.budget_s:
                truncated[index] = True

        # Each image's lines in the detector's order, largest first, so that a budget that runs
        # out leaves the smallest lines unread rather than the long ones, which in chats are the
        # sentences that carry a number or an address. Batches stay within an image: on a CPU
        # they save nothing (see ReaderConfig.rec_batch), and this keeps the order.
        lines: list[list[tuple[int, TextLine]]] = [[] for _ in images]
        by_image: list[list[int]] = [[] for _ in images]
        for i, (owner, _, _) in enumerate(crops):
            by_image[owner].append(i)
        for owner, members in enumerate(by_image):
            for first in range(0, len(members), config.rec_batch):
                if spent[owner] > config.budget_s:
                    truncated[owner] = True
                    break
                chunk = members[first : first + config.rec_batch]
                start = time.process_time()
                results = self._recognize_batch([crops[i][1] for i in chunk])
                spent[owner] += time.process_time() - start
                for i, (text, score) in zip(chunk, results, strict=True):
                    if score >= config.min_line_score and text.strip():
                        lines[owner].append((i, TextLine(text=text, score=score, box=crops[i][2])))

        readings = []
        for index in range(len(images)):
            # Reading order (top to bottom, then left to right), which the recognizers' row
            # grouping and cue-word look-back assume.
            ordered = sorted(lines[index], key=lambda item: (round(item[1].box[1], 2), item[1].box[0]))
            readings.append(
                RawReading(
                    status=ReadingStatus.BUDGET_EXCEEDED if truncated[index] else ReadingStatus.READ,
                    gate_score=gates[index].score,
                    lines=tuple(line for _, line in ordered),
                    detected=detected[index],
                    cpu_s=spent[index],
                )
            )
        return readings


def _box_finder(config: ReaderConfig, max_candidates: int, dilate: bool) -> DBPostProcess:
    return DBPostProcess(
        thresh=config.det_threshold,
        box_thresh=config.box_threshold,
        max_candidates=max_candidates,
        unclip_ratio=config.unclip_ratio,
        use_dilation=dilate,
        score_mode="fast",
    )


def _det_tensor(image: np.ndarray) -> np.ndarray:
    # PaddleOCR's detector normalisation: mean 0.5, std 0.5 on 0..1 pixels, NCHW.
    return (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[np.newaxis]


def normalised_box(quad: np.ndarray, width: int, height: int) -> Box:
    """A quadrilateral in pixels -> its bounding box as fractions of the image (0..1)."""
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    return (
        float(np.clip(x0 / width, 0, 1)),
        float(np.clip(y0 / height, 0, 1)),
        float(np.clip(x1 / width, 0, 1)),
        float(np.clip(y1 / height, 0, 1)),
    )


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
