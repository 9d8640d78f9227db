"""End to end with the real exported model (built by the project's training code): worker
processes with ONNX Runtime, the TensorFlow SavedModel engine, the Predict API, the audit file,
and the decode shortcut for large JPEGs."""

from __future__ import annotations

import io
import sqlite3

import grpc
import numpy as np
import pytest
from PIL import Image

from model.preprocess import decode_image
from model.repository import latest_version_dir, load_metadata
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.serving.engines.onnx_engine import OnnxEngine
from tests.harness import ServerThread, make_config
from training.demo_data import read_labels

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_images(real_model):
    _, labels = real_model
    rows = read_labels(labels)
    picked = {}
    for row in rows:
        picked.setdefault(row.label, [])
        if len(picked[row.label]) < 2:
            picked[row.label].append(row)
    return [(row.label, row.path.read_bytes()) for group in picked.values() for row in group]


def classify(target, request):
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.ModerationStub(channel).Classify(request, timeout=60)


def expected_decision(scores, thresholds):
    decision = "PASS"
    for cls, t in thresholds.items():
        if scores[cls] >= t["block"]:
            return "BLOCK"
        if scores[cls] >= t["review"]:
            decision = "REVIEW"
    return decision


def test_post_through_worker_processes_with_the_real_model(real_model, demo_images, image_host, tmp_path):
    repo, _ = real_model
    metadata = load_metadata(latest_version_dir(repo, "moderation"))
    audit = tmp_path / "audit.sqlite3"
    config = make_config(
        repo,
        audit,
        allow=(image_host.allow_entry,),
        model={"runner": "process", "workers": 2},
        audit={"sample_rate": 0.5},
    )
    images = []
    for i, (label, data) in enumerate(demo_images):
        if i % 2:
            images.append(pb.ImageInput(id=f"{label}-{i}", content=data))
        else:
            images.append(pb.ImageInput(id=f"{label}-{i}", url=image_host.add(f"/{i}.img", data)))
    running = ServerThread(config).start()
    try:
        assert running.service.models.current.engine_name == "onnx"
        response = classify(running.target, pb.ClassifyRequest(post_id="post-e2e", images=images))
    finally:
        running.stop()
    assert [r.id for r in response.results] == [i.id for i in images]
    assert response.model_name == "moderation" and response.model_version == str(metadata.version)
    decisions = []
    for result in response.results:
        assert pb.ImageStatusCode.Name(result.status.code) == "IMAGE_OK", result.status.message
        assert set(result.scores) == set(metadata.class_names)
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-4)
        decision = expected_decision(result.scores, metadata.thresholds)
        assert pb.Decision.Name(result.decision) == f"DECISION_{decision}"
        decisions.append(result.decision)
    assert response.post_decision == max(decisions)
    flagged = {r.id for r in response.results if pb.Decision.Name(r.decision) != "DECISION_PASS"}
    sampled = {r.id for r in response.results if r.audit_sampled}
    rows = {row[0] for row in sqlite3.connect(audit).execute("SELECT image_id FROM audit_records")}
    assert rows == flagged | sampled


def test_savedmodel_engine_serves_the_same_scores_as_onnx(real_model, demo_images, tmp_path):
    repo, _ = real_model
    request = pb.ClassifyRequest(
        post_id="p", images=[pb.ImageInput(id=str(i), content=data) for i, (_, data) in enumerate(demo_images)]
    )
    scores = {}
    for engine in ("onnx", "savedmodel"):
        config = make_config(repo, tmp_path / f"{engine}.sqlite3", model={"engine": engine, "runner": "thread"})
        running = ServerThread(config).start()
        try:
            assert running.service.models.current.engine_name == engine
            response = classify(running.target, request)
        finally:
            running.stop()
        scores[engine] = np.array([[r.scores[c] for c in sorted(r.scores)] for r in response.results])
    np.testing.assert_allclose(scores["onnx"], scores["savedmodel"], atol=1e-4)


def test_dct_downscaled_decode_scores_within_tolerance_of_full_decode(real_model, demo_images):
    repo, _ = real_model
    version = latest_version_dir(repo, "moderation")
    metadata = load_metadata(version)
    size = metadata.input_size
    engine = OnnxEngine(str(version / "model.onnx"), threads=1)
    fast, full = [], []
    for _, data in demo_images:
        big = Image.open(io.BytesIO(data)).convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        big.save(buffer, "JPEG", quality=92)
        jpeg = buffer.getvalue()
        fast.append(decode_image(jpeg, (size, size)))
        # The slow path: decode every pixel, then resize.
        whole = Image.open(io.BytesIO(jpeg)).convert("RGB")
        full.append(np.asarray(whole.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)))
    a, b = engine.predict(np.stack(fast)), engine.predict(np.stack(full))
    assert np.abs(a - b).max() < 0.1
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.8
