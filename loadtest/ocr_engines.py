"""The OCR engine comparison behind the reader's choice of engine (docs/ocr-engines.md):

    python -m loadtest.ocr_engines [--per-kind N] [--out var/ocr-engines] [--doc docs/ocr-engines.md]

Every engine reads the same text-bearing images of the held-out benchmark generator
(training.benchmark_data, seed 7, 600 per class, as `python -m training benchmark` holds out):
personal_info images of every kind and the ham kinds that carry text (photos without text and
the `sexual` class say nothing about reading). Images are decoded at reading size as the server
does (model.preprocess.decode_for_reading, longest side 960) and each engine's lines go through
the reader's own recognizers, so "PI found" and "ham flagged" are what the service would see.

Each engine runs in a child process of its own, one after the other: its RSS increase is then
its own, nothing it loads (two OpenCV wheels, two rapidocr packages, libtesseract) can meet
another engine's, and OMP_THREAD_LIMIT=1 is in place before any library starts its threads.
CPU time is time.process_time() around the engine call alone (all of the process's threads,
so an engine that went multi-threaded would show it), after one untimed warm-up read.

Engines that cannot be imported here are reported as "not installed"; docs/ocr-engines.md
says how to install all of them into a side virtualenv.

Ground truth: where the generator says what it drew (benchmark_data.generate_details: kind,
has_text, a transcript of the lines with their entity types), that is used. Otherwise the tool
records every string drawn through PIL's ImageDraw.text while the image is generated. The
"chars read" figures count the transcript's characters. The language is the one returned by
the generator's text functions (training.demo_content.personal_text/benign_text) where they
are called, else JP when kana or kanji were drawn and EN when not. An image is text-bearing
when the generator says so or drew text on it. A generator that neither says nor draws
through PIL is refused: nothing would tell its text images from its photos."""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import pickle
import platform
import re
import shlex
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

START_MARK = "<!-- ocr-engines:start -->"
END_MARK = "<!-- ocr-engines:end -->"
# The held-out benchmark's parameters (training/__main__.py --heldout-per-class, the seed of
# benchmark_data.write_benchmark_dataset), so these are the images the fusion is measured on.
SEED, PER_CLASS = 7, 600
READ_SIDE = 960
# Text-bearing images come from these classes; `sexual` has no text to read.
TEXT_CLASSES = ("personal_info", "ham")
# Kinds that are photos by name, for a generator that draws text other than through PIL.
PHOTO_KINDS = ("photo",)
# Images in all when --per-kind is not given: per kind, this over the number of kinds.
TARGET_IMAGES = 300
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata")
# Single-threaded like the server's engines: parallelism comes from worker processes.
THREAD_ENV = {"OMP_THREAD_LIMIT": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    key: str
    title: str
    modules: tuple[str, ...]
    make: Callable[[], Callable[[np.ndarray], list[Any]]]
    notes: str = ""


# --------------------------------------------------------------------------------------------
# Adapters: each returns a function from an RGB image at reading size to TextLines in reading
# order. Imports stay inside so that the tool runs with whichever engines are installed.


def _reading_order(lines: list[Any]) -> list[Any]:
    # The order OcrEngine.read gives (top to bottom, then left to right): the recognizers'
    # row grouping and cue look-back assume it, so every engine gets the same.
    return sorted(lines, key=lambda line: (round(line.box[1], 2), line.box[0]))


def _box(points: Any, width: int, height: int) -> tuple[float, float, float, float]:
    from model.reader.ocr import normalised_box

    return normalised_box(np.asarray(points, np.float32).reshape(-1, 2), width, height)


def _open_gate() -> Any:
    """What OcrEngine.read takes for an image the gate let through whole: a gate score of 1.0,
    or, where the gate also says where the text is, a Gate with no region (the whole image)."""
    from model.reader import ocr

    gate = getattr(ocr, "Gate", None)
    if gate is None:
        return 1.0
    try:
        return gate(score=1.0, read=True, region=None)
    except TypeError:
        return gate(1.0, True)


def make_ppocrv6(budget: bool = True) -> Callable[[np.ndarray], list[Any]]:
    from model.reader.config import ReaderConfig
    from model.reader.ocr import OcrEngine

    config = ReaderConfig()
    if not budget:
        # The model without the reader's per-image limits: what the other engines get.
        unlimited: dict[str, Any] = {"max_lines": 10_000, "budget_s": 1e9}
        names = {f.name for f in dataclasses.fields(config)}
        config = dataclasses.replace(config, **{k: v for k, v in unlimited.items() if k in names})
    engine = OcrEngine(config)
    engine.warm_up()
    gate = _open_gate()

    def read(image: np.ndarray) -> list[Any]:
        # The gate is bypassed: reading is what is measured.
        (raw,) = engine.read([image], [gate])
        read.status = raw.status.value  # type: ignore[attr-defined]
        return list(raw.lines)

    return read


def make_ppocrv4() -> Callable[[np.ndarray], list[Any]]:
    from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-not-found, import-untyped, unused-ignore]

    from model.reader.types import TextLine

    # limit_type "max" with 960 never enlarges (the default, "min" 736, upscales small images
    # to a 736-pixel short side); no angle classifier, as in the reader.
    engine = RapidOCR(
        intra_op_num_threads=1,
        inter_op_num_threads=1,
        use_cls=False,
        det_limit_type="max",
        det_limit_side_len=READ_SIDE,
        print_verbose=False,
    )

    def read(image: np.ndarray) -> list[Any]:
        height, width = image.shape[:2]
        # rapidocr takes an ndarray as OpenCV's BGR, the channel order its models were trained on.
        result, _ = engine(np.ascontiguousarray(image[:, :, ::-1]), use_cls=False)
        lines = [
            TextLine(text=str(text), score=float(score), box=_box(points, width, height))
            for points, text, score in (result or [])
            if str(text).strip()
        ]
        return _reading_order(lines)

    return read


def tessdata_dir() -> str | None:
    for candidate in (os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA_DIRS):
        if candidate and all(Path(candidate, f"{lang}.traineddata").is_file() for lang in ("eng", "jpn")):
            return candidate
    return None


_CJK = r"\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) +(?=[{_CJK}])")


def _make_tesseract(psm_name: str) -> Callable[[np.ndarray], list[Any]]:
    import tesserocr  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from PIL import Image

    from model.reader.types import TextLine

    path = tessdata_dir()
    if path is None:
        raise RuntimeError("eng and jpn traineddata not found (apt-get install tesseract-ocr-eng tesseract-ocr-jpn)")
    api = tesserocr.PyTessBaseAPI(
        path=path, lang="eng+jpn", psm=getattr(tesserocr.PSM, psm_name), oem=tesserocr.OEM.LSTM_ONLY
    )
    # Japanese models put a space between every pair of glyphs unless told otherwise.
    api.SetVariable("preserve_interword_spaces", "1")
    level = tesserocr.RIL.TEXTLINE

    def read(image: np.ndarray) -> list[Any]:
        height, width = image.shape[:2]
        api.SetImage(Image.fromarray(image))
        api.Recognize()
        iterator = api.GetIterator()
        lines = []
        if iterator is not None:
            for item in tesserocr.iterate_level(iterator, level):
                try:
                    text = item.GetUTF8Text(level)
                except RuntimeError:  # tesserocr's way of saying the line is empty
                    continue
                box = item.BoundingBox(level)
                if not text or not text.strip() or box is None:
                    continue
                # What spaces remain between CJK glyphs are not in the text and would split
                # cue words (電 話) that the other engines read whole.
                text = _CJK_GAP.sub("", " ".join(text.split()))
                x0, y0, x1, y1 = box
                lines.append(
                    TextLine(
                        text=text,
                        score=max(0.0, float(item.Confidence(level))) / 100,
                        box=_box([(x0, y0), (x1, y1)], width, height),
                    )
                )
        api.Clear()
        return _reading_order(lines)

    return read


ENGINES: dict[str, EngineSpec] = {
    spec.key: spec
    for spec in (
        EngineSpec(
            "ppocrv6",
            "PP-OCRv6 small (rapidocr 3.10.0, the reader's OcrEngine)",
            ("rapidocr", "onnxruntime", "cv2"),
            make_ppocrv6,
            "the reader's own settings (ReaderConfig(): detection size, line and CPU budget)",
        ),
        EngineSpec(
            "ppocrv6-unbudgeted",
            "PP-OCRv6 small, without the reader's line and CPU budget",
            ("rapidocr", "onnxruntime", "cv2"),
            lambda: make_ppocrv6(budget=False),
            "as ppocrv6, every line read",
        ),
        EngineSpec(
            "ppocrv4",
            "PP-OCRv4 (rapidocr-onnxruntime 1.4.4)",
            ("rapidocr_onnxruntime", "onnxruntime", "cv2"),
            make_ppocrv4,
            "no budget",
        ),
        EngineSpec(
            "tesseract-psm3",
            "Tesseract eng+jpn, PSM 3 auto (tesserocr)",
            ("tesserocr",),
            lambda: _make_tesseract("AUTO"),
            "no budget",
        ),
        EngineSpec(
            "tesseract-psm6",
            "Tesseract eng+jpn, PSM 6 single block (tesserocr)",
            ("tesserocr",),
            lambda: _make_tesseract("SINGLE_BLOCK"),
            "no budget",
        ),
        EngineSpec(
            "tesseract-psm11",
            "Tesseract eng+jpn, PSM 11 sparse text (tesserocr)",
            ("tesserocr",),
            lambda: _make_tesseract("SPARSE_TEXT"),
            "no budget",
        ),
    )
}


def missing(spec: EngineSpec) -> str | None:
    """Why an engine cannot run here, or None. Looks for the modules without importing them."""
    for module in spec.modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"not installed ({module})"
    if spec.key.startswith("tesseract") and tessdata_dir() is None:
        return "not installed (eng/jpn traineddata)"
    return None


# --------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass
class Sample:
    id: str
    label: str
    kind: str
    data: bytes
    lang: str | None  # "ja", "en", "mixed", or None when the generator did not say
    truth: list[str] = dataclasses.field(default_factory=list)
    lang_source: str | None = None  # "generator", "drawn" (kana/kanji drawn or not), None
    # The entity types drawn, and whether the image is in the generator's hard setting, where
    # the generator says (None where it does not).
    entities: list[str] | None = None
    hard: bool | None = None


@dataclasses.dataclass
class _Record:
    # Every string drawn on the image (PIL's ImageDraw.text), and the language each of the
    # generator's text functions said it drew: ("personal" | "benign", lang).
    drawn: list[str] = dataclasses.field(default_factory=list)
    langs: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def _recording() -> Iterator[_Record]:
    """Records, while open, what the generator draws and the languages its text functions
    return. Drawing is seen at PIL's ImageDraw.text, which every generator so far has drawn
    text through, so the ground truth is the text actually drawn (not what was chosen and
    then cut, as a chat screenshot cuts bubbles to two lines)."""
    from PIL import ImageDraw

    from training import benchmark_data, demo_content, demo_data

    record = _Record()
    patched: list[tuple[Any, str, Any]] = []
    # Nested calls (multiline text drawn line by line, personal_text calling personal_lines)
    # are the outer call's: only depth 0 records.
    depth = {"draw": 0, "text": 0}

    def patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if callable(original):
            patched.append((owner, name, original))
            setattr(owner, name, make(original))

    def draw_text(original: Any) -> Any:
        def text(self: Any, xy: Any, content: Any, *args: Any, **kwargs: Any) -> Any:
            depth["draw"] += 1
            try:
                return original(self, xy, content, *args, **kwargs)
            finally:
                depth["draw"] -= 1
                if depth["draw"] == 0 and isinstance(content, str) and content.strip():
                    record.drawn.append(content)

        return text

    def text_function(which: str) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                depth["text"] += 1
                try:
                    result = original(*args, **kwargs)
                finally:
                    depth["text"] -= 1
                if depth["text"] == 0:
                    with contextlib.suppress(TypeError, ValueError):
                        _, lang = result
                        record.langs.append((which, str(lang)))
                return result

            return wrapper

        return make

    patch(ImageDraw.ImageDraw, "text", draw_text)
    for name, which in (
        ("personal_text", "personal"),
        ("personal_lines", "personal"),
        ("benign_text", "benign"),
        ("benign_lines", "benign"),
    ):
        for module in (benchmark_data, demo_data, demo_content):
            patch(module, name, text_function(which))
    try:
        yield record
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _kind_of(result: Any) -> str:
    # The generator's API is (bytes, ext, variant); a `kind`, should it gain one, wins.
    kind = getattr(result, "kind", None)
    if isinstance(kind, str):
        return kind
    return str(result[3] if len(result) > 3 and isinstance(result[3], str) else result[2])


def _language(label: str, record: _Record) -> tuple[str | None, str | None]:
    """(language, where it came from): the language the generator's text function said (for
    personal_info, that of the personal data), else Japanese when kana or kanji were drawn and
    English when not; None when nothing was drawn."""
    own = [lang for which, lang in record.langs if which == ("personal" if label == "personal_info" else "benign")]
    langs = set(own or [lang for _, lang in record.langs])
    if langs:
        return (next(iter(langs)) if len(langs) == 1 else "mixed"), "generator"
    if not record.drawn:
        return None, None
    return ("ja" if any(_has_japanese(text) for text in record.drawn) else "en"), "drawn"


def collect(per_kind: int | None, log: Callable[[str], None]) -> list[Sample]:
    """The first `per_kind` text-bearing images of each kind of personal_info and ham (enough
    for about TARGET_IMAGES in all when None). Kinds are whatever the generator names; an image
    is text-bearing when the generator drew text on it (a plain photo draws none)."""
    from training import benchmark_data

    kind_of = getattr(benchmark_data, "kind_of", None) or getattr(benchmark_data, "variant_of", None)
    # Where the generator says what it drew (kind, whether there is text, a transcript with
    # entity types), that is used; the recording is the fallback.
    details = getattr(benchmark_data, "generate_details", None)
    is_hard = getattr(benchmark_data, "is_hard", None)
    cap = per_kind or TARGET_IMAGES
    found: dict[tuple[str, str], list[Sample]] = {}
    drew_any = False
    photos: dict[tuple[str, str], int] = collections.Counter()
    for label in TEXT_CLASSES:
        for index in range(PER_CLASS):
            if callable(kind_of):
                # A cheap skip where the generator names an index's kind without drawing it.
                with contextlib.suppress(Exception):
                    if len(found.get((label, str(kind_of(label, index, PER_CLASS))), [])) >= cap:
                        continue
            with _recording() as record:
                made = details(SEED, label, index, PER_CLASS) if callable(details) else None
                result = (made.data, made.ext, made.kind) if made is not None else None
                if result is None:
                    result = benchmark_data.generate(SEED, label, index, PER_CLASS)
            kind = _kind_of(result)
            bucket = found.setdefault((label, kind), [])
            if len(bucket) >= cap:
                continue
            transcript = [str(line[0]) for line in getattr(made, "lines", ())]
            if transcript:
                record.drawn = transcript
            has_text = getattr(made, "has_text", None)
            drew_any = drew_any or bool(record.drawn) or bool(has_text)
            if has_text is False or (
                has_text is None and not record.drawn and (record.langs == [] or kind in PHOTO_KINDS)
            ):
                photos[(label, kind)] += 1
                continue
            lang, source = _language(label, record)
            entities = getattr(made, "entities", None)
            bucket.append(
                Sample(
                    f"{label}/{index:05d}",
                    label,
                    kind,
                    bytes(result[0]),
                    lang,
                    record.drawn,
                    source,
                    [str(e) for e in entities] if entities is not None else None,
                    bool(is_hard(index)) if callable(is_hard) else None,
                )
            )
    if not drew_any:
        raise RuntimeError("the generator drew no text through PIL's ImageDraw.text: nothing to tell text from photos")
    kinds = {key: bucket for key, bucket in found.items() if bucket}
    take = per_kind or math.ceil(TARGET_IMAGES / max(1, len(kinds)))
    short = {f"{label}/{kind}": len(bucket) for (label, kind), bucket in kinds.items() if len(bucket) < take}
    if short:
        log(f"kinds with fewer text-bearing images than {take}: {short}")
    if photos:
        log(
            "skipped as drawing no text: "
            + ", ".join(f"{label}/{kind} {n}" for (label, kind), n in sorted(photos.items()))
        )
    return [sample for bucket in kinds.values() for sample in bucket[:take]]


# --------------------------------------------------------------------------------------------
# The child process: one engine over every image


def _rss_mib(field_name: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _chars(lines: Sequence[str]) -> collections.Counter[str]:
    return collections.Counter(c for line in lines for c in unicodedata.normalize("NFKC", line) if not c.isspace())


def _is_kana(char: str) -> bool:
    return "\u3040" <= char <= "\u30ff"


def _has_japanese(text: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in text)


def run_worker(key: str, images_path: Path, result_path: Path, keep_text: bool) -> None:
    from model.preprocess import decode_for_reading
    from model.reader.config import ReaderConfig
    from model.reader.recognizers import RecognizerConfig, recognize
    from model.reader.types import TextLine

    samples = [Sample(**fields) for fields in pickle.loads(images_path.read_bytes())]
    decoded = [decode_for_reading(s.data, READ_SIDE) for s in samples]
    recognizer_config = RecognizerConfig(phone_regions=tuple(ReaderConfig().phone_regions))
    # The recognizers once, phone path included, so that their lazy set-up (libphonenumber's
    # metadata per region) is not counted as the engine's memory.
    recognize([TextLine("TEL 03-1234-5678 / +1 (415) 555-0100", 1.0, (0.0, 0.0, 1.0, 0.1))], recognizer_config)

    rss_before = _rss_mib()
    cpu = time.process_time()
    read = ENGINES[key].make()
    load_cpu_s = time.process_time() - cpu
    # Loaded, before any image: what a worker holds for the engine between requests. What
    # reading adds (activations, freed but kept by the allocator) shows in the peak.
    rss_loaded = _rss_mib()
    read(decoded[0])

    rows = []
    for sample, image in zip(samples, decoded, strict=True):
        start = time.process_time()
        lines = read(image)
        cpu_ms = (time.process_time() - start) * 1000
        found = recognize(lines, recognizer_config) if lines else None
        texts = [line.text for line in lines]
        truth, seen = _chars(sample.truth), _chars(texts)
        row: dict[str, Any] = {
            "id": sample.id,
            "cpu_ms": round(cpu_ms, 2),
            "lines": len(lines),
            "entities": sorted(f.entity.value for f in found.findings) if found else [],
            "cues": sorted({c.category for c in found.cues}) if found else [],
            "truth_chars": sum(truth.values()),
            "chars_read": sum((truth & seen).values()),
            "truth_kana": sum(n for c, n in truth.items() if _is_kana(c)),
            "kana_read": sum(n for c, n in (truth & seen).items() if _is_kana(c)),
            "japanese_seen": _has_japanese("".join(texts)),
        }
        status = getattr(read, "status", None)
        if status is not None:
            row["status"] = status
        if keep_text:
            # Invented text of synthetic images, kept for looking into a figure; the service
            # itself never keeps what it read.
            row["text"] = texts
            row["truth"] = sample.truth
        rows.append(row)
    result_path.write_text(
        json.dumps(
            {
                "engine": key,
                "load_cpu_s": round(load_cpu_s, 2),
                "rss_before_mib": round(rss_before, 1),
                "rss_loaded_mib": round(rss_loaded, 1),
                "rss_peak_mib": round(_rss_mib("VmHWM"), 1),
                "images": rows,
            },
            ensure_ascii=False,
        )
    )


# --------------------------------------------------------------------------------------------
# Summary and the document


def _share(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def summarise(result: dict[str, Any], samples: Sequence[Sample], langs: dict[str, str | None]) -> dict[str, Any]:
    by_id = {s.id: s for s in samples}
    rows = result["images"]
    cpu = np.array([r["cpu_ms"] for r in rows])

    def share(label: str, predicate: Callable[[dict[str, Any], Sample], bool] = lambda r, s: True) -> float | None:
        return _share(
            [bool(r["entities"]) for r in rows if by_id[r["id"]].label == label and predicate(r, by_id[r["id"]])]
        )

    def by_lang(lang: str) -> Callable[[dict[str, Any], Sample], bool]:
        return lambda r, s: langs.get(s.id) == lang

    kinds = sorted({(s.label, s.kind) for s in samples})
    # A finding of a type that was drawn: "found" for the right reason, or at least a
    # plausible one (the value itself is not compared).
    typed = [
        bool(set(r["entities"]) & set(by_id[r["id"]].entities or ()))
        for r in rows
        if by_id[r["id"]].label == "personal_info" and by_id[r["id"]].entities is not None
    ]
    settings = {
        name: {
            "pi_found": share("personal_info", lambda r, s, hard=hard: s.hard is hard),  # type: ignore[misc]
            "ham_flagged": share("ham", lambda r, s, hard=hard: s.hard is hard),  # type: ignore[misc]
        }
        for name, hard in (("standard", False), ("hard", True))
        if any(s.hard is hard for s in samples)
    }
    truth_chars = sum(r["truth_chars"] for r in rows)
    truth_kana = sum(r["truth_kana"] for r in rows)
    statuses = collections.Counter(r.get("status") for r in rows if r.get("status"))
    return {
        "images": len(rows),
        "cpu_ms_mean": round(float(cpu.mean()), 1),
        "cpu_ms_p90": round(float(np.percentile(cpu, 90)), 1),
        "cpu_ms_max": round(float(cpu.max()), 1),
        "pi_found": share("personal_info"),
        "pi_found_right_type": _share(typed),
        "ham_flagged": share("ham"),
        "by_setting": settings,
        "pi_found_ja": share("personal_info", by_lang("ja")),
        "pi_found_en": share("personal_info", by_lang("en")),
        "ham_flagged_ja": share("ham", by_lang("ja")),
        "ham_flagged_en": share("ham", by_lang("en")),
        "chars_read": sum(r["chars_read"] for r in rows) / truth_chars if truth_chars else None,
        "kana_read": sum(r["kana_read"] for r in rows) / truth_kana if truth_kana else None,
        "by_kind": {
            f"{label}/{kind}": share(label, lambda r, s, kind=kind: s.kind == kind)  # type: ignore[misc]
            for label, kind in kinds
        },
        "cpu_ms_by_kind": {
            f"{label}/{kind}": round(
                float(
                    np.mean(
                        [r["cpu_ms"] for r in rows if by_id[r["id"]].kind == kind and by_id[r["id"]].label == label]
                    )
                ),
                1,
            )
            for label, kind in kinds
        },
        "statuses": dict(statuses),
        "rss_load_mib": round(result["rss_loaded_mib"] - result["rss_before_mib"], 1),
        "rss_peak_mib": round(result["rss_peak_mib"] - result["rss_before_mib"], 1),
        "load_cpu_s": result["load_cpu_s"],
    }


def render(summary: dict[str, Any]) -> str:
    engines = summary["engines"]
    ran = {k: e for k, e in engines.items() if "figures" in e}
    counts = summary["images"]
    lines = [
        f"Measured {summary['date']} on {summary['machine']}, one engine at a time, single-threaded; "
        f"command: `{summary['command']}`.",
        "",
        f"{counts['total']} text-bearing held-out benchmark images (seed {SEED}, {PER_CLASS} per class; generator "
        f"versions: benchmark_data {summary['generator']['version'].get('benchmark_data')}, "
        f"demo_data {summary['generator']['version'].get('demo_data')}): "
        f"{counts['personal_info']} personal_info ({counts['personal_info_ja']} JP, {counts['personal_info_en']} EN), "
        f"{counts['ham']} ham text ({counts['ham_ja']} JP, {counts['ham_en']} EN"
        + (f", {counts['ham_mixed']} mixed" if counts.get("ham_mixed") else "")
        + f"); language: {summary['language_source']}. Images at reading size (longest side ≤ {READ_SIDE}).",
        "",
        "| engine | CPU ms/image mean | p90 | PI found | PI found, a type drawn | PI found JP | PI found EN | "
        "ham flagged | ham flagged JP | ham flagged EN | chars read | kana read | RSS load | RSS peak |",
        "|---" * 14 + "|",
    ]
    for entry in engines.values():
        if "figures" not in entry:
            lines.append(f"| {entry['title']} | {entry['status']} |" + " |" * 12)
            continue
        f = entry["figures"]
        lines.append(
            f"| {entry['title']} | {f['cpu_ms_mean']:.0f} | {f['cpu_ms_p90']:.0f} | {_pct(f['pi_found'])} | "
            f"{_pct(f.get('pi_found_right_type'))} | "
            f"{_pct(f['pi_found_ja'])} | {_pct(f['pi_found_en'])} | {_pct(f['ham_flagged'])} | "
            f"{_pct(f['ham_flagged_ja'])} | {_pct(f['ham_flagged_en'])} | {_pct(f['chars_read'])} | "
            f"{_pct(f['kana_read'])} | {f['rss_load_mib']:.0f} MiB | {f['rss_peak_mib']:.0f} MiB |"
        )
    if ran:
        lines += [
            "",
            "By kind of image: share with at least one finding (personal_info: found; ham: flagged), and mean CPU ms:",
            "",
            "| class/kind | images | " + " | ".join(key for key in ran) + " |",
            "|---" * (2 + len(ran)) + "|",
        ]
        first = next(iter(ran.values()))["figures"]
        for kind in first["by_kind"]:
            cells = [
                f"{_pct(e['figures']['by_kind'][kind])} · {e['figures']['cpu_ms_by_kind'][kind]:.0f} ms"
                for e in ran.values()
            ]
            lines.append(f"| {kind} | {counts['by_kind'][kind]} | " + " | ".join(cells) + " |")
        first_settings = first.get("by_setting") or {}
        if first_settings:
            lines += [
                "",
                "By the generator's setting (hard: smaller text, larger turns, more blur and noise):",
                "",
                "| class, setting | images | " + " | ".join(key for key in ran) + " |",
                "|---" * (2 + len(ran)) + "|",
            ]
            for label, figure in (("personal_info", "pi_found"), ("ham", "ham_flagged")):
                for setting in first_settings:
                    n = counts.get("by_setting", {}).get(f"{label}/{setting}", "?")
                    cells = [_pct(e["figures"]["by_setting"].get(setting, {}).get(figure)) for e in ran.values()]
                    lines.append(f"| {label}, {setting} | {n} | " + " | ".join(cells) + " |")
        notes = [f"{k}: {e['notes']}" for k, e in ran.items() if e.get("notes")]
        config = summary.get("reader_config", {})
        if "ppocrv6" in ran and config:
            detect_side = config.get("det_side", config.get("read_side"))
            notes.append(
                f"the reader detects at longest side {detect_side} and reads at most "
                f"{config.get('max_lines')} lines in {config.get('budget_s')} s CPU an image"
            )
        budget = {
            k: e["figures"]["statuses"].get("BUDGET_EXCEEDED", 0) for k, e in ran.items() if e["figures"]["statuses"]
        }
        lines += ["", "Notes: " + "; ".join(notes) + "."]
        if budget:
            lines.append(
                "Images the reader's budget cut short: "
                + ", ".join(f"{k} {n} of {ran[k]['figures']['images']}" for k, n in budget.items())
                + "."
            )
    return "\n".join(lines)


def write_doc(doc: Path, summary: dict[str, Any]) -> None:
    # The pattern of training/benchmark.py's write_doc: replace what is between the markers,
    # append the markers if the document has none.
    text = doc.read_text(encoding="utf-8") if doc.is_file() else f"{START_MARK}\n{END_MARK}\n"
    if START_MARK not in text or END_MARK not in text:
        text += f"\n{START_MARK}\n{END_MARK}\n"
    pattern = re.compile(re.escape(START_MARK) + ".*?" + re.escape(END_MARK), re.S)
    block = f"{START_MARK}\n{render(summary)}\n{END_MARK}"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(pattern.sub(lambda _: block, text, count=1), encoding="utf-8")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ocr_engines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, help=f"images per (class, kind); default: about {TARGET_IMAGES} in all")
    parser.add_argument("--out", default="var/ocr-engines", help="results JSON and work files")
    parser.add_argument("--doc", default="docs/ocr-engines.md", help="markdown file whose marked block gets the table")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--keep-text", action="store_true", help="keep what each engine read in the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, Path(args.images), Path(args.result), args.keep_text)
        return 0

    def log(message: str) -> None:
        print(f"[ocr-engines] {message}", file=sys.stderr, flush=True)

    keys = [k.strip() for k in args.engines.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {list(ENGINES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    samples = collect(args.per_kind, log)
    images_path = out / "images.pickle"
    # Plain dicts: the child imports this module as __main__ too, but need not rely on it.
    images_path.write_bytes(pickle.dumps([dataclasses.asdict(s) for s in samples]))
    log(f"{len(samples)} images generated in {time.monotonic() - started:.0f}s")

    engines: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        spec = ENGINES[key]
        entry: dict[str, Any] = {"title": spec.title, "notes": spec.notes}
        engines[key] = entry
        why = missing(spec)
        if why:
            entry["status"] = why
            log(f"{key}: {why}")
            continue
        result_path = out / f"{key}.images.json"
        result_path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "loadtest.ocr_engines", "--worker", key]
        command += ["--images", str(images_path), "--result", str(result_path)]
        command += ["--keep-text"] if args.keep_text else []
        log(f"{key}: reading {len(samples)} images")
        t = time.monotonic()
        done = subprocess.run(command, env={**os.environ, **THREAD_ENV}, check=False)
        if done.returncode != 0 or not result_path.is_file():
            entry["status"] = f"failed (exit {done.returncode})"
            log(f"{key}: failed, exit {done.returncode}")
            continue
        results[key] = json.loads(result_path.read_text())
        entry["status"] = "ran"
        log(f"{key}: done in {time.monotonic() - t:.0f}s")

    langs = {s.id: s.lang for s in samples}
    sources = collections.Counter(str(s.lang_source) for s in samples)
    described = {
        "generator": "the language the generator's text functions returned",
        "drawn": "JP where the generator drew kana or kanji, else EN",
    }
    source = "; ".join(
        described.get(k, k) + (f" ({n} images)" if len(sources) > 1 else "") for k, n in sources.most_common()
    )
    for key, result in results.items():
        engines[key]["figures"] = summarise(result, samples, langs)

    def count(label: str, lang: str | None = None) -> int:
        return sum(1 for s in samples if s.label == label and (lang is None or langs[s.id] == lang))

    summary = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "command": "python -m loadtest.ocr_engines" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "python": sys.version.split()[0],
        "generator": {"seed": SEED, "per_class": PER_CLASS, "version": _generator_version()},
        "language_source": source,
        "language_sources": dict(sources),
        "images": {
            "total": len(samples),
            "personal_info": count("personal_info"),
            "personal_info_ja": count("personal_info", "ja"),
            "personal_info_en": count("personal_info", "en"),
            "ham": count("ham"),
            "ham_ja": count("ham", "ja"),
            "ham_en": count("ham", "en"),
            "ham_mixed": count("ham", "mixed"),
            "by_kind": {
                f"{label}/{kind}": n
                for (label, kind), n in sorted(collections.Counter((s.label, s.kind) for s in samples).items())
            },
            "by_setting": {
                f"{s_label}/{'hard' if hard else 'standard'}": n
                for (s_label, hard), n in collections.Counter(
                    (s.label, s.hard) for s in samples if s.hard is not None
                ).items()
            },
        },
        "versions": _versions(),
        "reader_config": _reader_config(),
        "engines": engines,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(render(summary))
    if args.doc:
        write_doc(Path(args.doc), summary)
        log(f"table written to {args.doc}")
    return 0


def _generator_version() -> dict[str, Any]:
    from training import benchmark_data, demo_data

    return {
        "benchmark_data": getattr(benchmark_data, "GENERATOR_VERSION", None),
        "demo_data": getattr(demo_data, "GENERATOR_VERSION", None),
    }


def _reader_config() -> dict[str, Any]:
    from model.reader.config import ReaderConfig

    return dataclasses.asdict(ReaderConfig())


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in (
        "rapidocr",
        "rapidocr-onnxruntime",
        "onnxruntime",
        "tesserocr",
        "opencv-python-headless",
        "opencv-python",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    if importlib.util.find_spec("tesserocr") is not None:
        with contextlib.suppress(Exception):
            out = subprocess.run(
                [sys.executable, "-c", "import tesserocr; print(tesserocr.tesseract_version().split()[1])"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            versions["libtesseract"] = out.stdout.strip()
    return versions


if __name__ == "__main__":
    raise SystemExit(main())
