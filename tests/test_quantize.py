"""Opt-in int8 (training/quantize.py): the quantised file and its recorded evaluation, and the
onnx_int8 engine, which serves it only when that evaluation accepted it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import grpc
import numpy as np
import pytest

from model.preprocess import decode_image
from model.repository import INT8_FILE, METADATA_FILE, latest_version_dir, load_metadata, update_metadata
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.config import ModelConfig
from server.serving.engines import open_engine
from server.serving.engines.onnx_engine import OnnxEngine
from tests.harness import ServerThread, make_config
from training import quantize
from training.demo_data import read_labels

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def quantized(real_model, tmp_path_factory):
    """A copy of the smoke model's version (the ONNX file and metadata are all int8 needs) with
    an int8 file added by the command line, on few calibration images and a token speed run.
    The margin is wide: the smoke model is trained for one epoch, so its small held-out set
    says little; the acceptance rule itself is tested with judge() and tampered metadata."""
    repo, labels = real_model
    source = latest_version_dir(repo, "moderation")
    root = tmp_path_factory.mktemp("int8") / "models"
    version = root / "moderation" / "1"
    version.mkdir(parents=True)
    for name in ("model.onnx", METADATA_FILE):
        shutil.copy(source / name, version / name)
    before = json.loads((version / METADATA_FILE).read_text())
    # Rewriting the metadata must keep what newer code added, not only the fields this code knows.
    before["added_by_newer_code"] = {"kept": True}
    (version / METADATA_FILE).write_text(json.dumps(before))
    code = quantize.main(
        [
            str(version),
            "--calibration-images",
            "16",
            "--auc-margin",
            "1.0",
            "--demo-data",
            str(labels.parent),
            "--speed-seconds",
            "0.2",
        ]
    )
    assert code == 0
    return root, version, before


@pytest.fixture(scope="module")
def images(real_model):
    _, labels = real_model
    rows = read_labels(labels)
    return np.stack([decode_image(row.path.read_bytes(), (128, 128)) for row in rows[::10]])


@pytest.mark.e2e
@pytest.mark.slow
def test_quantize_adds_the_int8_file_and_its_evaluation(quantized):
    _, version, before = quantized
    meta = load_metadata(version)
    entry = meta.engines.onnx_int8
    assert (version / entry.file).is_file() and entry.file == INT8_FILE
    assert entry.sha256 == quantize.file_sha256(version / INT8_FILE)
    assert entry.accepted is True and entry.reasons == [] and entry.auc_margin == 1.0
    assert set(entry.auc) == set(entry.auc_fp32) == set(meta.class_names)
    assert entry.max_auc_drop == pytest.approx(max(entry.auc_fp32[c] - entry.auc[c] for c in meta.class_names))
    # Evaluated on the version's own held-out posts: the float32 AUCs are the ones training
    # recorded (from Keras; the ONNX file matches it to 1e-4).
    assert entry.eval_images == meta.training["data"]["held_out_examples"]
    for name in meta.class_names:
        # The network's own AUC: the quantizer judges the network, and personal_info in
        # per_class is the fused score.
        assert entry.auc_fp32[name] == pytest.approx(meta.evaluation["cnn_auc"][name], abs=0.02)
    assert entry.calibration_images == 16
    assert set(entry.images_per_s_1thread) == {"fp32", "int8"}
    assert all(v > 0 for v in entry.images_per_s_1thread.values())
    assert 0 <= entry.max_abs_diff < 0.2
    # Everything else in the metadata is as it was, and the atomic writes left no temp files.
    after = json.loads((version / METADATA_FILE).read_text())
    del after["engines"]["onnx_int8"]
    assert after == before
    assert sorted(p.name for p in version.iterdir()) == sorted([INT8_FILE, METADATA_FILE, "model.onnx"])
    assert (version / INT8_FILE).stat().st_mode & 0o777 == 0o644
    assert (version / METADATA_FILE).stat().st_mode & 0o777 == 0o644


def test_judge_refuses_a_drop_over_the_margin_and_an_unmeasurable_auc():
    fp32 = {"ham": 0.97, "sexual": 1.0, "bad": 0.9}
    assert quantize.judge(fp32, {"ham": 0.968, "sexual": 1.0, "bad": 0.91}, 0.005) == (pytest.approx(0.002), [])
    drop, reasons = quantize.judge(fp32, {"ham": 0.96, "sexual": 1.0, "bad": 0.9}, 0.005)
    assert drop == pytest.approx(0.01) and len(reasons) == 1 and reasons[0].startswith("ham")
    _, reasons = quantize.judge(fp32, {"ham": 0.97, "sexual": float("nan"), "bad": 0.9}, 0.005)
    assert len(reasons) == 1 and "sexual" in reasons[0]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_refused_int8_model_is_recorded_as_refused_and_not_served(real_model, monkeypatch, tmp_path):
    repo, labels = real_model
    version = tmp_path / "1"
    version.mkdir()
    for name in ("model.onnx", METADATA_FILE):
        shutil.copy(latest_version_dir(repo, "moderation") / name, version / name)
    # Whether the smoke model's int8 copy loses AUC is chance; the evaluation's verdict is not.
    monkeypatch.setattr(quantize, "judge", lambda *_: (0.02, ["ham: AUC 0.9 -> 0.88, a drop of 0.02 > margin 0.005"]))
    code = quantize.main(
        [str(version), "--calibration-images", "8", "--demo-data", str(labels.parent), "--speed-seconds", "0"]
    )
    assert code == quantize.EXIT_REFUSED
    entry = load_metadata(version).engines.onnx_int8
    assert entry.accepted is False and entry.reasons and entry.max_auc_drop == 0.02
    assert (version / INT8_FILE).is_file() and entry.images_per_s_1thread == {}
    for config in (ModelConfig(engine="onnx_int8"), ModelConfig(engine="onnx_int8", int8_auc_margin=1.0)):
        with pytest.raises(ValueError, match="refused by its evaluation: ham"):
            open_engine(load_metadata(version), version, config, threads=1)


@pytest.mark.e2e
@pytest.mark.slow
def test_int8_engine_serves_an_accepted_model_close_to_float32(quantized, images):
    _, version, _ = quantized
    meta = load_metadata(version)
    engine = open_engine(meta, version, ModelConfig(engine="onnx_int8", int8_auc_margin=1.0), threads=1)
    assert engine.name == "onnx_int8"
    int8 = engine.predict(images)
    fp32 = OnnxEngine(str(version / "model.onnx"), threads=1).predict(images)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.2
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.8


def _with_entry(meta, **changes):
    engines = dataclasses.replace(meta.engines, onnx_int8=dataclasses.replace(meta.engines.onnx_int8, **changes))
    return dataclasses.replace(meta, engines=engines)


@pytest.mark.e2e
@pytest.mark.slow
def test_int8_engine_refuses_unless_accepted_within_the_configured_margin(quantized, tmp_path):
    _, version, _ = quantized
    meta = load_metadata(version)
    config = ModelConfig(engine="onnx_int8", int8_auc_margin=0.005)
    refused = {
        "not accepted": _with_entry(meta, accepted=False, reasons=["ham: a drop of 0.02 > margin 0.005"]),
        "over this server's margin": _with_entry(meta, max_auc_drop=0.006),
        "NaN drop": _with_entry(meta, max_auc_drop=float("nan")),
        "another file": _with_entry(meta, sha256="0" * 64),
        "no file": _with_entry(meta, file="missing.onnx"),
        "never quantized": dataclasses.replace(meta, engines=dataclasses.replace(meta.engines, onnx_int8=None)),
    }
    accepted = _with_entry(meta, max_auc_drop=0.0)
    refused["float32 failed parity"] = dataclasses.replace(
        accepted,
        engines=dataclasses.replace(accepted.engines, onnx=dataclasses.replace(meta.engines.onnx, max_abs_diff=0.5)),
    )
    for why, bad in refused.items():
        with pytest.raises(ValueError, match="onnx_int8 refused"):
            open_engine(bad, version, config, threads=1)
            pytest.fail(why)
    assert open_engine(_with_entry(meta, max_auc_drop=0.005), version, config, threads=1).name == "onnx_int8"

    # The bytes on disk count, not only the metadata: a changed file is refused.
    copy = tmp_path / "1"
    shutil.copytree(version, copy)
    (copy / INT8_FILE).write_bytes((copy / INT8_FILE).read_bytes() + b"\0")
    with pytest.raises(ValueError, match="not the file that was evaluated"):
        open_engine(_with_entry(meta, max_auc_drop=0.0), copy, config, threads=1)


@pytest.mark.e2e
@pytest.mark.slow
def test_auto_takes_int8_only_when_opted_in_and_accepted(quantized):
    _, version, _ = quantized
    meta = _with_entry(load_metadata(version), max_auc_drop=0.0)
    assert open_engine(meta, version, ModelConfig(), threads=1).name == "onnx"
    assert open_engine(meta, version, ModelConfig(prefer_int8=True), threads=1).name == "onnx_int8"
    refused = _with_entry(meta, accepted=False)
    assert open_engine(refused, version, ModelConfig(prefer_int8=True), threads=1).name == "onnx"


@pytest.mark.e2e
@pytest.mark.slow
def test_server_with_engine_onnx_int8_serves_or_refuses_per_the_metadata(quantized, images, tmp_path):
    root, _, _ = quantized
    request = pb.ClassifyRequest(
        post_id="p", images=[pb.ImageInput(id=str(i), content=data) for i, data in enumerate(_png(images[:4]))]
    )
    scores = {}
    for engine in ("onnx", "onnx_int8"):
        config = make_config(
            root,
            tmp_path / f"{engine}.sqlite3",
            model={
                "engine": engine,
                "int8_auc_margin": 1.0,
                "workers": 1,
                # A worker process: the new config fields cross into it.
                "runner": "process" if engine == "onnx_int8" else "thread",
            },
        )
        running = ServerThread(config).start()
        try:
            assert running.service.models.current.engine_name == engine
            with grpc.insecure_channel(running.target) as channel:
                response = pb_grpc.ModerationStub(channel).Classify(request, timeout=60)
        finally:
            running.stop()
        scores[engine] = np.array([[r.scores[c] for c in sorted(r.scores)] for r in response.results])
    assert np.abs(scores["onnx"] - scores["onnx_int8"]).max() < 0.2

    # Refused by its evaluation: the server does not serve that version with int8.
    refused_root = tmp_path / "refused"
    shutil.copytree(root, refused_root)
    update_metadata(
        refused_root / "moderation" / "1",
        lambda data: data["engines"]["onnx_int8"].update(accepted=False, reasons=["test"]),
    )
    config = make_config(
        refused_root,
        tmp_path / "refused.sqlite3",
        model={"engine": "onnx_int8", "int8_auc_margin": 1.0, "poll_interval_s": 0.0},
    )
    running = ServerThread(config).start()
    try:
        assert running.service.models.current is None
    finally:
        running.stop()


def _png(images: np.ndarray) -> list[bytes]:
    import io

    from PIL import Image

    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


@pytest.mark.e2e
@pytest.mark.slow
def test_a_version_without_an_evaluation_set_is_evaluated_on_generated_demo_images(real_model, monkeypatch, tmp_path):
    repo, _ = real_model
    meta = dataclasses.replace(load_metadata(latest_version_dir(repo, "moderation")), training={})
    monkeypatch.setattr(quantize, "FALLBACK_PER_CLASS", 6)
    found = quantize.find_images(tmp_path, meta, 4, demo_data=tmp_path / "demo", log=lambda m: None)
    assert found.source["kind"] == "demo" and "no usable evaluation set" in found.source["description"]
    assert len(found.calibration) == 4 and len(found.eval_images) > 0
    assert set(found.eval_labels.tolist()) == {0, 1, 2}
    # Calibration images are never evaluation images.
    flat_eval = {img.tobytes() for img in found.eval_images}
    assert not any(img.tobytes() in flat_eval for img in found.calibration)
