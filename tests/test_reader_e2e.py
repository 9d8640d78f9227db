"""The text reader end to end with the real exported model (trained with its fusion by the
project's own pipeline in the smoke config): a Classify call with a known phone number comes
back with the finding, its box and the fused score; the number itself appears nowhere in the
logs, the metrics or the audit store."""

from __future__ import annotations

import json
import logging
import sqlite3

import grpc
import pytest
from prometheus_client import generate_latest

from model.repository import latest_version_dir, load_metadata
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from tests.harness import ServerThread, make_config
from tests.test_reader import photo_without_text, render

pytestmark = [pytest.mark.timeout(600), pytest.mark.e2e, pytest.mark.slow]

PHONE = "090-4817-2265"
SECRET_PARTS = ("4817", "2265", "48172265", "09048172265")


def test_the_version_carries_its_fusion_and_reader_settings(real_model):
    repo, _ = real_model
    metadata = load_metadata(latest_version_dir(repo, "moderation"))
    assert metadata.reader["fusion"]["feature_names"][0] == "cnn_logit"
    assert metadata.reader["engine"].startswith("rapidocr")
    assert "PHONE" in metadata.reader["entity_types"]
    assert metadata.reader["fitted_on"]["images"] > 0


def test_classify_reads_the_number_reports_it_masked_and_never_stores_or_logs_it(real_model, tmp_path, caplog, capfd):
    repo, _ = real_model
    audit = tmp_path / "audit.sqlite3"
    config = make_config(
        repo,
        audit,
        model={"runner": "process", "workers": 1},
        reader={"enabled": True},
        # Every image to the audit store: a PASS too must not leak what was read.
        audit={"sample_rate": 1.0},
    )
    caplog.set_level(logging.DEBUG)
    server = ServerThread(config).start()
    try:
        card = render(["Contact me", f"TEL {PHONE}"])
        request = pb.ClassifyRequest(
            post_id="post-1",
            images=[pb.ImageInput(id="card", content=card), pb.ImageInput(id="photo", content=photo_without_text())],
        )
        with grpc.insecure_channel(server.target) as channel:
            response = pb_grpc.ModerationStub(channel).Classify(request, timeout=60)
        metrics = generate_latest(server.service.metrics.registry).decode()
    finally:
        server.stop()

    card_result, photo_result = response.results
    assert card_result.reading.status == pb.READING_READ
    phones = [f for f in card_result.reading.findings if f.entity == pb.ENTITY_PHONE]
    assert phones, card_result
    box = phones[0].box
    assert 0.0 <= box.x0 < box.x1 <= 1.0 and 0.0 <= box.y0 < box.y1 <= 1.0
    assert phones[0].masked.endswith("65") and "4817" not in phones[0].masked
    assert card_result.reading.fused
    # The served personal_info score is the fused one, not the CNN's.
    assert card_result.scores["personal_info"] != pytest.approx(card_result.reading.cnn_personal_info, abs=1e-6)
    assert "entity:PHONE" in card_result.reasons
    assert photo_result.reading.status == pb.READING_SKIPPED
    assert not photo_result.reading.findings

    assert 'moderation_findings_total{entity="phone"}' in metrics
    assert 'moderation_reading_total{status="skipped"}' in metrics

    stored = sqlite3.connect(audit).execute("SELECT image_id, reading FROM audit_records").fetchall()
    readings = {image_id: json.loads(reading) for image_id, reading in stored}
    assert readings["card"]["findings"][0]["entity"] == "PHONE"
    captured = capfd.readouterr()
    text_everywhere = {
        "logs": caplog.text + captured.out + captured.err,
        "metrics": metrics,
        # The WAL file too: recent rows may not be in the main file yet.
        "audit store": "".join(p.read_bytes().decode("latin-1") for p in tmp_path.glob("audit.sqlite3*")),
    }
    for where, text in text_everywhere.items():
        for part in SECRET_PARTS:
            assert part not in text, f"{part!r} found in the {where}"
