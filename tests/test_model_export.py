"""The exported-model contract: SavedModel signature, ONNX parity, metadata, repository layout,
atomic publishing, and the demo training CLI end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import onnx
import tensorflow as tf

from model import repository
from model.export import export_version
from model.network import build_model
from model.onnx_export import parity, run_onnx, save_onnx
from model.preprocess import decode_image
from model.repository import (
    Engines,
    Int8Entry,
    ModelMetadata,
    OnnxEntry,
    latest_version_dir,
    list_versions,
    load_metadata,
    publish_version,
)

CLASSES = ["ham", "sexual", "personal_info"]
SIZE = 64
REPO_ROOT = Path(__file__).resolve().parents[1]


def sharpened_model(class_names=CLASSES, head="softmax", seed=0, pooling="flatten") -> keras.Model:
    """A model with random weights whose scores are far from uniform, so a wrong weight layout
    or flatten order shows up as a large difference rather than hiding in near-equal scores."""
    keras.utils.set_random_seed(seed)
    model = build_model(class_names, input_size=SIZE, head=head, pooling=pooling)
    out = model.get_layer("scores")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 100.0, bias])
    return model


def real_images(size: int) -> np.ndarray:
    """Real photographs and a rendered text image, through the server's decoder."""
    import io

    import skimage.data
    from PIL import Image

    from training.demo_data import generate_image

    images = []
    for sample in (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()):
        buf = io.BytesIO()
        Image.fromarray(sample).save(buf, "JPEG", quality=90)
        images.append(decode_image(buf.getvalue(), (size, size)))
    for label in ("personal_info", "sexual"):
        data, _ = generate_image(0, label, 1)
        images.append(decode_image(data, (size, size)))
    return np.stack(images)


def random_images(count: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def metadata(class_names=CLASSES, **changes) -> ModelMetadata:
    fields = dict(
        name="moderation",
        version=0,
        class_names=class_names,
        input_size=SIZE,
        head="softmax",
        benign_class=class_names[0],
        thresholds={c: {"review": 0.4, "block": 0.9} for c in class_names[1:]},
        created_at="2026-01-01T00:00:00+00:00",
        training={"epochs": 0},
        evaluation={"accuracy": 0.5},
    )
    fields.update(changes)
    return ModelMetadata(**fields)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return sharpened_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    return export_version(model, metadata(), root, "moderation", check_with=real_images(SIZE))


def test_saved_model_signature_matches_keras(model, exported):
    fn = tf.saved_model.load(str(repository.saved_model_dir(exported))).signatures[repository.SIGNATURE_NAME]
    _, inputs = fn.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape.as_list() == [None, None, None, 3]
    assert list(fn.structured_outputs) == ["scores"]

    images = np.concatenate([random_images(4, SIZE), real_images(SIZE)])
    scores = fn(images=tf.constant(images))["scores"].numpy()
    expected = model.predict(images, verbose=0)
    assert scores.dtype == np.float32 and scores.shape == (len(images), len(CLASSES))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(scores, axis=1).mean() > 0.3  # sharpened: far from uniform


def test_saved_model_resizes_any_input_size(model, exported):
    fn = tf.saved_model.load(str(exported)).signatures["serving_default"]
    images = random_images(2, 150)[:, :, :97]
    scores = fn(images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(scores, model.predict(images, verbose=0), atol=1e-5)


def test_onnx_matches_keras_on_random_and_real_images(model, exported):
    onnx_file = repository.onnx_path(exported)
    assert parity(model, onnx_file, random_images(8, SIZE)) < 1e-4
    assert parity(model, onnx_file, real_images(SIZE)) < 1e-4
    signature = tf.saved_model.load(str(exported)).signatures["serving_default"]
    assert parity(signature, onnx_file, real_images(SIZE)) < 1e-4


def test_onnx_graph_contract(exported):
    graph = onnx.load(str(repository.onnx_path(exported))).graph
    (inp,), (out,) = graph.input, graph.output
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [SIZE, SIZE, 3] and isinstance(dims[0], str)
    assert out.name == "scores" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        run_onnx(repository.onnx_path(exported), random_images(1, SIZE + 16))


@pytest.mark.parametrize(
    ("class_names", "head", "pooling"),
    [
        (["ok", "bad"], "sigmoid", "flatten"),
        (CLASSES, "softmax", "global_max"),
        (["ok", "bad"], "sigmoid", "global_max"),
    ],
)
def test_onnx_parity_for_every_head_and_pooling(tmp_path, class_names, head, pooling):
    model = sharpened_model(class_names, head=head, seed=3, pooling=pooling)
    save_onnx(model, tmp_path / "m.onnx")
    images = np.concatenate([random_images(4, SIZE, seed=5), real_images(SIZE)])
    assert parity(model, tmp_path / "m.onnx", images) < 1e-4


def test_published_metadata_records_version_and_engines(exported):
    meta = load_metadata(exported)
    assert meta.version == int(exported.name) == 1
    assert meta.class_names == tuple(CLASSES) and meta.benign_class == "ham"
    assert meta.flagged_classes == ("sexual", "personal_info")
    assert meta.engines.onnx.file == "model.onnx"
    assert 0 <= meta.engines.onnx.max_abs_diff < 1e-4
    assert meta.engines.savedmodel.max_abs_diff < 1e-5
    assert (exported / "saved_model.pb").is_file() and (exported / "variables").is_dir()


def test_engine_entries_are_typed_and_keep_the_json_they_were_read_from():
    engines = {
        "savedmodel": {"signature": "serving_default", "input": "images", "output": "scores", "max_abs_diff": 1e-7},
        "onnx": {"file": "model.onnx", "opset": 17, "max_abs_diff": 2e-7, "added_later": 1},
        # Complete as training/quantize.py writes it: absent fields would be written back as defaults.
        "onnx_int8": {
            **Int8Entry().to_dict(),
            "file": "model.int8.onnx",
            "sha256": "ab",
            "accepted": True,
            "max_auc_drop": 0.001,
            "auc": {"ham": 0.99},
            "added_later": [1, 2],
        },
        "parity_images": 40,
        "some_future_engine": {"file": "x"},
    }
    meta = ModelMetadata.from_json(metadata(engines=engines).to_json())
    assert isinstance(meta.engines, Engines) and isinstance(meta.engines.onnx, OnnxEntry)
    assert meta.engines.onnx.passed_parity(1e-4) and not meta.engines.onnx.passed_parity(1e-8)
    assert isinstance(meta.engines.onnx_int8, Int8Entry) and meta.engines.onnx_int8.accepted
    assert meta.engines.parity_images == 40
    # Written back as the same JSON, keys this code does not know included.
    assert json.loads(meta.to_json())["engines"] == engines
    # A version without engines (or an entry without its file) loads and passes no parity check.
    bare = ModelMetadata.from_json(metadata().to_json())
    assert bare.engines == Engines() and bare.engines.onnx is None
    assert not OnnxEntry(max_abs_diff=0.0).passed_parity(1e-4)
    assert not OnnxEntry(file="model.onnx", max_abs_diff=float("nan")).passed_parity(1e-4)


def test_metadata_round_trips_through_json():
    meta = metadata(score_baseline={"bin_edges": [0.0, 1.0], "histograms": {"ham": [1.0]}})
    again = ModelMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.class_names == tuple(CLASSES)
    with_extra = ModelMetadata.from_dict({**meta.to_dict(), "added_by_newer_code": 1})
    assert with_extra == meta


@pytest.mark.parametrize(
    "changes",
    [
        {"thresholds": {"sexual": {"review": 0.4, "block": 0.9}}},
        {"thresholds": {c: {"review": 0.9, "block": 0.4} for c in CLASSES[1:]}},
        {"thresholds": {c: {"review": 0.0, "block": 0.4} for c in CLASSES[1:]}},
        {"benign_class": "spam"},
        {"class_names": ["ham"], "thresholds": {}},
    ],
)
def test_metadata_rejects_inconsistent_contents(changes):
    with pytest.raises(ValueError):
        metadata(**changes)


def test_list_versions_ignores_everything_but_complete_versions(tmp_path):
    assert list_versions(tmp_path, "moderation") == []
    assert latest_version_dir(tmp_path, "moderation") is None
    model_dir = tmp_path / "moderation"
    for name in ("1", "3", "12"):
        (model_dir / name).mkdir(parents=True)
        (model_dir / name / "metadata.json").write_text(metadata(version=int(name)).to_json())
    for name in (".tmp-13-abc", "007", "0", "latest", "-4", "20"):  # "20" has no metadata.json
        (model_dir / name).mkdir()
    (model_dir / ".tmp-14-x").mkdir()
    (model_dir / ".tmp-14-x" / "metadata.json").write_text("{}")
    (model_dir / "30").write_text("a file, not a directory")
    assert list_versions(tmp_path, "moderation") == [1, 3, 12]
    assert latest_version_dir(tmp_path, "moderation") == model_dir / "12"


def test_publish_is_atomic_and_numbers_past_every_integer_dir(tmp_path):
    (tmp_path / "moderation" / "5").mkdir(parents=True)  # half-copied by hand: no metadata
    seen_during_build = []

    def build(tmp_dir: Path, version: int) -> None:
        assert tmp_dir.name.startswith(".tmp-") and tmp_dir.parent == tmp_path / "moderation"
        (tmp_dir / "metadata.json").write_text(metadata(version=version).to_json())
        seen_during_build.append((version, list_versions(tmp_path, "moderation")))

    published = publish_version(tmp_path, "moderation", build)
    assert seen_during_build == [(6, [])]
    assert published == tmp_path / "moderation" / "6"
    assert published.stat().st_mode & 0o777 == 0o755
    assert list_versions(tmp_path, "moderation") == [6]
    assert not [p for p in (tmp_path / "moderation").iterdir() if p.name.startswith(".")]


def test_failed_publish_leaves_nothing_behind(tmp_path):
    def build(tmp_dir: Path, version: int) -> None:
        (tmp_dir / "metadata.json").write_text(metadata(version=version).to_json())
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_version(tmp_path, "moderation", build)
    assert list_versions(tmp_path, "moderation") == []
    assert list((tmp_path / "moderation").iterdir()) == []


def test_parity_detects_a_wrong_weight(model, tmp_path):
    path = tmp_path / "tampered.onnx"
    save_onnx(model, path)
    proto = onnx.load(str(path))
    (bias,) = [init for init in proto.graph.initializer if init.name == "out_b"]
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] += 5.0
    bias.CopyFrom(onnx.numpy_helper.from_array(values, "out_b"))
    onnx.save(proto, str(path))
    assert parity(model, path, real_images(SIZE)) > 1e-2


def test_second_export_becomes_version_two(model, exported):
    root = exported.parent.parent
    second = export_version(model, dataclasses.replace(metadata(), training={"epochs": 1}), root, "moderation")
    assert second.name == "2" and list_versions(root, "moderation")[-2:] == [1, 2]
    assert latest_version_dir(root, "moderation") == second


@pytest.mark.slow
def test_smoke_training_cli_publishes_a_loadable_version(tmp_path):
    command = [
        sys.executable,
        "-m",
        "training",
        "run",
        "--config-name",
        "demo",
        "--smoke",
        "--models",
        str(tmp_path / "models"),
        "--name",
        "moderation",
        "--demo-dir",
        str(tmp_path / "data"),
        "--demo-per-class",
        "24",
        "--dataset",
        str(tmp_path / "dataset"),
        "--run",
        str(tmp_path / "run"),
        "--set",
        f"promote.log_path={tmp_path / 'promotions.jsonl'}",
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "held-out accuracy" in run.stdout
    version_dir = latest_version_dir(tmp_path / "models", "moderation")
    meta = load_metadata(version_dir)
    assert meta.input_size == 128 and set(meta.thresholds) == {"sexual", "personal_info"}
    assert meta.engines.onnx.max_abs_diff < 1e-4
    assert set(meta.evaluation["per_class"]) == set(CLASSES)
    assert meta.score_baseline["histograms"].keys() == set(CLASSES)

    again = subprocess.run([*command, "--if-missing"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert list_versions(tmp_path / "models", "moderation") == [1]
