"""The exported-model contract shared by training (which writes versions) and the server
(which polls for and loads them).

Layout, as TensorFlow Serving expects it::

    <repo_root>/<name>/<version>/          version: positive integer, no leading zeros
        saved_model.pb, variables/          SavedModel; signature `serving_default`:
                                            images: uint8 [None, None, None, 3]
                                            -> scores: float32 [None, num_classes]
        model.onnx                          same computation; input fixed at input_size
        model.int8.onnx                     optional, added later by `python -m training quantize`
        metadata.json                       ModelMetadata

A version directory only ever appears complete: it is built under a `.tmp-*` name in the same
parent directory and renamed into place, and readers ignore dot-directories. What is added to a
published version later (the int8 file, its metadata entry) replaces files by rename
(replace_file), so a reader never sees a partly written one. This module does
not import TensorFlow so that the server's directory polling stays cheap."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"
# Optional: the statically quantised copy `python -m training quantize` adds (metadata engines.onnx_int8).
INT8_FILE = "model.int8.onnx"
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "scores"
TEMP_PREFIX = ".tmp-"
# Bumped when a reader of an older layout would misread a newer one.
FORMAT_VERSION = 1

THRESHOLD_KINDS = ("review", "block")


_Entry = TypeVar("_Entry", "SavedModelEntry", "OnnxEntry", "Int8Entry")


def _entry_from_dict(cls: type[_Entry], data: Any, where: str) -> _Entry:
    if not isinstance(data, Mapping):
        raise ValueError(f"metadata engines.{where} must be an object, not {type(data).__name__}")
    known = {f.name for f in fields(cls)} - {"extra"}
    # Keys written by newer code are kept (and written back), not dropped: an older quantizer
    # rewriting a newer version's metadata must not lose what it does not know.
    extra = {k: v for k, v in data.items() if k not in known}
    return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)


def _entry_to_dict(entry: Any) -> dict[str, Any]:
    data = {f.name: getattr(entry, f.name) for f in fields(entry) if f.name != "extra"}
    return {**entry.extra, **data}


@dataclass(frozen=True)
class SavedModelEntry:
    """engines.savedmodel: the SavedModel in the version directory itself."""

    signature: str = SIGNATURE_NAME
    input: str = INPUT_NAME
    output: str = OUTPUT_NAME
    # Largest |score difference| from the Keras model at export; None: not measured.
    max_abs_diff: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> SavedModelEntry:
        return _entry_from_dict(cls, data, "savedmodel")

    def to_dict(self) -> dict[str, Any]:
        return _entry_to_dict(self)


@dataclass(frozen=True)
class OnnxEntry:
    """engines.onnx: the float32 ONNX file and its export-time parity with Keras."""

    # Relative to the version directory; empty: none recorded.
    file: str = ""
    opset: int | None = None
    max_abs_diff: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> OnnxEntry:
        return _entry_from_dict(cls, data, "onnx")

    def to_dict(self) -> dict[str, Any]:
        return _entry_to_dict(self)

    def passed_parity(self, tolerance: float) -> bool:
        # Unmeasured or NaN fails: only a measured difference within the tolerance passes.
        return bool(self.file) and self.max_abs_diff is not None and self.max_abs_diff <= tolerance


@dataclass(frozen=True)
class Int8Entry:
    """engines.onnx_int8: the statically quantised copy and the evaluation that accepted or
    refused it (training/quantize.py writes it; the server's onnx_int8 engine reads it)."""

    file: str = ""
    sha256: str = ""
    source_sha256: str = ""
    accepted: bool = False
    reasons: list[str] = field(default_factory=list)
    auc_margin: float | None = None
    auc: dict[str, float] = field(default_factory=dict)
    auc_fp32: dict[str, float] = field(default_factory=dict)
    # NaN when no class's AUC was measurable; None in entries that never recorded it.
    max_auc_drop: float | None = None
    max_abs_diff: float | None = None
    top_class_agreement: float | None = None
    decision_agreement: float | None = None
    eval_images: int = 0
    eval_source: dict[str, Any] = field(default_factory=dict)
    calibration_images: int = 0
    images_per_s_1thread: dict[str, float] = field(default_factory=dict)
    speed_batch: int | None = None
    load_average_1min: float | None = None
    cpu_flags: list[str] = field(default_factory=list)
    onnxruntime: str = ""
    created_at: str = ""
    format: str = ""
    per_channel: bool | None = None
    reduce_range: bool | None = None
    activations: str = ""
    weights: str = ""
    calibration_method: str = ""
    float_nodes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> Int8Entry:
        return _entry_from_dict(cls, data, "onnx_int8")

    def to_dict(self) -> dict[str, Any]:
        return _entry_to_dict(self)


_ENGINE_KEYS = ("savedmodel", "onnx", "onnx_int8", "parity_images")


@dataclass(frozen=True)
class Engines:
    """metadata.json's `engines`: what each engine finds in the version directory. Read and
    written as the same JSON object as before (keys savedmodel, onnx, onnx_int8,
    parity_images); an entry that is absent is None, keys this code does not know are kept."""

    savedmodel: SavedModelEntry | None = None
    onnx: OnnxEntry | None = None
    onnx_int8: Int8Entry | None = None
    # How many images the export compared the engines with Keras on.
    parity_images: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Engines:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"metadata engines must be an object, not {type(data).__name__}")
        present = {k: v for k, v in data.items() if v is not None}
        return cls(
            savedmodel=SavedModelEntry.from_dict(present["savedmodel"]) if "savedmodel" in present else None,
            onnx=OnnxEntry.from_dict(present["onnx"]) if "onnx" in present else None,
            onnx_int8=Int8Entry.from_dict(present["onnx_int8"]) if "onnx_int8" in present else None,
            parity_images=int(present["parity_images"]) if "parity_images" in present else None,
            extra={k: v for k, v in data.items() if k not in _ENGINE_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        for key in _ENGINE_KEYS[:3]:
            entry = getattr(self, key)
            if entry is not None:
                data[key] = entry.to_dict()
        if self.parity_images is not None:
            data["parity_images"] = self.parity_images
        return data


@dataclass(frozen=True)
class ModelMetadata:
    """What a version says about itself; the server's policy reads its thresholds from here.

    `thresholds[cls]` holds `review` and `block` for every class except `benign_class`; an
    image is flagged for a class when its score is >= the threshold. `score_baseline` holds
    the per-class score histograms on held-out data that drift monitoring compares live
    traffic against (server/audit/drift.py), in this format::

        {"bin_edges": [0.0, 0.1, ..., 1.0],      # ascending edges shared by every class
         "histograms": {"ham": [...], ...},       # per class: len(bin_edges) - 1 counts or shares
                                                  # of that class's score (any scale: normalised)
         "examples": 1200,                        # optional: how many images
         "decision_mix": {"PASS": 0.9, "REVIEW": 0.07, "BLOCK": 0.03},  # optional: shares of
                                                  # the decisions this version's thresholds give
         "class_mix": {"ham": 0.85, ...}}         # optional: shares of each top class

    (`bins` and `classes` are read as aliases of `bin_edges` and `histograms`.) PSI compares
    distributions, so the baseline should come from data with the production class mix; a
    balanced held-out set makes every class's PSI high from day one. Empty: no drift figures
    but the miss rate."""

    name: str
    version: int
    class_names: tuple[str, ...]
    input_size: int
    head: str
    benign_class: str
    thresholds: dict[str, dict[str, float]]
    created_at: str
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    engines: Engines = field(default_factory=Engines)
    score_baseline: dict[str, Any] = field(default_factory=dict)
    # The text reader this version was fitted with: {"engine", "settings", "entity_types",
    # "fusion": model.reader.fusion.Fusion.to_dict()}. Empty: personal_info is the CNN's alone.
    reader: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # JSON gives lists; a tuple keeps the frozen object's class order immutable.
        object.__setattr__(self, "class_names", tuple(self.class_names))
        # A plain mapping (the JSON object, or a caller's dict) becomes the typed entries.
        if not isinstance(self.engines, Engines):
            object.__setattr__(self, "engines", Engines.from_dict(self.engines))
        self.validate()

    def validate(self) -> None:
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be at least two distinct names: {self.class_names}")
        if self.benign_class not in self.class_names:
            raise ValueError(f"benign_class {self.benign_class!r} is not one of {self.class_names}")
        if self.version < 0:
            raise ValueError(f"version must not be negative: {self.version}")
        if self.input_size <= 0:
            raise ValueError(f"input_size must be positive: {self.input_size}")
        if self.format_version > FORMAT_VERSION:
            raise ValueError(f"metadata format {self.format_version} is newer than {FORMAT_VERSION}")
        expected = set(self.flagged_classes)
        if set(self.thresholds) != expected:
            raise ValueError(f"thresholds must cover exactly {sorted(expected)}, got {sorted(self.thresholds)}")
        for cls, levels in self.thresholds.items():
            if set(levels) != set(THRESHOLD_KINDS):
                raise ValueError(f"thresholds[{cls!r}] must have exactly {THRESHOLD_KINDS}: {levels}")
            review, block = levels["review"], levels["block"]
            if not (0.0 < review <= block <= 1.0):
                raise ValueError(f"thresholds[{cls!r}] need 0 < review <= block <= 1: {levels}")

    @property
    def flagged_classes(self) -> tuple[str, ...]:
        """The classes that carry thresholds: every class but the benign one, in model order."""
        return tuple(c for c in self.class_names if c != self.benign_class)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["engines"] = self.engines.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetadata:
        known = set(cls.__dataclass_fields__)
        # Unknown keys are dropped rather than rejected so that an older server can still load
        # a version written by newer training code that only added fields.
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["thresholds"] = {c: {k: float(v) for k, v in levels.items()} for c, levels in data["thresholds"].items()}
        kwargs["engines"] = Engines.from_dict(data.get("engines"))
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        return cls.from_dict(json.loads(text))


def load_metadata(version_dir: str | os.PathLike[str]) -> ModelMetadata:
    """Reads and validates `<version_dir>/metadata.json`. Raises OSError or ValueError."""
    return ModelMetadata.from_json((Path(version_dir) / METADATA_FILE).read_text(encoding="utf-8"))


def saved_model_dir(version_dir: str | os.PathLike[str]) -> Path:
    """The directory to hand to `tf.saved_model.load` (the version directory itself)."""
    return Path(version_dir)


def onnx_path(version_dir: str | os.PathLike[str]) -> Path:
    return Path(version_dir) / ONNX_FILE


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_dir(repo_root: str | os.PathLike[str], name: str) -> Path:
    return Path(repo_root) / name


def _parse_version(dirname: str) -> int | None:
    # Only canonical positive integers: "007" and "+7" would alias "7" in TF Serving's eyes.
    if not dirname.isdigit() or dirname.startswith("0"):
        return None
    return int(dirname)


def list_versions(repo_root: str | os.PathLike[str], name: str) -> list[int]:
    """Complete versions of model `name`, ascending. A missing repository lists as empty."""
    root = model_dir(repo_root, name)
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    versions = []
    for entry in entries:
        version = _parse_version(entry.name)
        if version is None or not entry.is_dir():
            continue
        if (Path(entry.path) / METADATA_FILE).is_file():
            versions.append(version)
    return sorted(versions)


def version_dir(repo_root: str | os.PathLike[str], name: str, version: int) -> Path:
    return model_dir(repo_root, name) / str(version)


def latest_version_dir(repo_root: str | os.PathLike[str], name: str) -> Path | None:
    versions = list_versions(repo_root, name)
    return version_dir(repo_root, name, versions[-1]) if versions else None


def _next_version(root: Path) -> int:
    # Counts integer directories even without metadata.json so a version being copied in by
    # hand (or left broken) is never overwritten.
    taken = [v for v in (_parse_version(e.name) for e in os.scandir(root)) if v is not None]
    return max(taken, default=0) + 1


def publish_version(
    repo_root: str | os.PathLike[str],
    name: str,
    build_fn: Callable[[Path, int], None],
) -> Path:
    """Builds a new version and makes it visible in one rename.

    `build_fn(tmp_dir, version)` writes the version's files into `tmp_dir`, a fresh directory
    on the same filesystem; `version` is the number it will be published as, for its metadata.
    Returns the published version directory. If `build_fn` raises, nothing is published and
    the temporary directory is removed. Raises FileExistsError if another publisher took the
    same version number meanwhile."""
    root = model_dir(repo_root, name)
    root.mkdir(parents=True, exist_ok=True)
    version = _next_version(root)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=root))
    try:
        # mkdtemp makes the directory owner-only; a server or TF Serving running as another user
        # must be able to read the published version.
        tmp_dir.chmod(0o755)
        build_fn(tmp_dir, version)
        _fsync_tree(tmp_dir)
        final = root / str(version)
        # os.rename silently replaces an existing empty directory, such as one an operator
        # has just made to copy a version into by hand.
        if final.exists():
            raise FileExistsError(f"version {version} of {name!r} appeared while publishing")
        os.rename(tmp_dir, final)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    _fsync_dir(root)
    return final


def replace_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Writes `path` so that a reader sees either the old or the new content, never a part.

    For adding to a version that is already published (and may be served, or being read by a
    polling server): the content goes to a dot-file beside it, is flushed, and renamed over."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; a server running as another user must read it.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def update_metadata(version_dir: str | os.PathLike[str], update: Callable[[dict[str, Any]], None]) -> ModelMetadata:
    """Changes a published version's metadata.json in place, atomically (replace_file).

    `update` edits the parsed JSON; keys this code does not know are kept as they were, and the
    result must still validate, else nothing is written. Returns the new metadata."""
    path = Path(version_dir) / METADATA_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    update(data)
    metadata = ModelMetadata.from_dict(data)
    replace_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return metadata


def _fsync_tree(top: Path) -> None:
    # Without this a crash shortly after the rename could leave a listed version whose files
    # are empty, which the rename was meant to rule out.
    for dirpath, _dirnames, filenames in os.walk(top):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
