"""End to end, smoke-sized: an audit SQLite file with operators' verdicts on images served over
HTTP -> `python -m training run` (dataset, train, evaluate, promote) -> a published version that
the server loads and serves; then promotion refuses a worse candidate, and --force overrides it
(logged)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.repository import list_versions, load_metadata, version_dir
from moderation_api.v1 import moderation_pb2 as pb
from server.audit.writer import open_store
from tests.harness import ServerThread, make_config
from tests.image_host import ImageHost
from tests.training_support import CLASSES, audit_record, class_image, judge
from training.config import Config

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.timeout(300), pytest.mark.e2e, pytest.mark.slow]


def publish_constant_model(models: Path) -> Path:
    """Version 1: a model whose every weight is zero, so it scores every image 1/3 per class."""
    from model.export import export_version
    from model.repository import ModelMetadata
    from training.train import build_float32_model

    cfg = Config.smoke()
    model = build_float32_model(cfg)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    metadata = ModelMetadata(
        name="moderation",
        version=0,
        class_names=CLASSES,
        input_size=cfg.data.input_size,
        head="softmax",
        benign_class="ham",
        thresholds={c: {"review": 0.5, "block": 0.9} for c in CLASSES[1:]},
        created_at="2026-01-01T00:00:00Z",
    )
    return export_version(model, metadata, models, "moderation")


def fill_audit_store(url: str, host: ImageHost) -> None:
    store = open_store(url)
    try:
        records, labels = [], []
        for label in CLASSES:
            for i in range(18):
                data = class_image(label, i)
                path = host.add(f"/{label}/{i}.png", data, content_type="image/png")
                records.append(audit_record(f"{label}-post-{i // 2}", f"img-{i}", path, data))
                labels.append(label)
        inline = audit_record("inline-post", "img-0", "", class_image("sexual", 99))
        store.write([*records, inline])
        judge(store, [*records, inline], [*labels, "sexual"])
    finally:
        store.close()


def test_audit_sqlite_to_published_version_served_then_promotion_rules(tmp_path):
    models, dataset, run = tmp_path / "models", tmp_path / "dataset", tmp_path / "run"
    promotions = tmp_path / "promotions.jsonl"
    audit_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    first = publish_constant_model(models)
    assert first.name == "1"

    with ImageHost() as host:
        fill_audit_store(audit_url, host)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "training",
                "run",
                "--smoke",
                "--audit-url",
                audit_url,
                "--dataset",
                str(dataset),
                "--run",
                str(run),
                "--models",
                str(models),
                "--name",
                "moderation",
                "--set",
                f"promote.log_path={promotions}",
                "--set",
                "train.epochs=4",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

        assert list_versions(models, "moderation") == [1, 2]
        assert "serving version 1:" in out.stdout and "published" in out.stdout
        meta = load_metadata(version_dir(models, "moderation", 2))
        assert meta.training["dataset"]["cleaning"]["removed"]["no_image_bytes"] == 1
        assert meta.training["promotion"]["accept"] and meta.training["promotion"]["against_version"] == 1
        assert set(meta.thresholds) == {"sexual", "personal_info"}
        assert (
            meta.evaluation["eval_split_id"]
            == json.loads((dataset / "manifest.json").read_text())["split"]["eval_split_id"]
        )
        assert set(meta.score_baseline["histograms"]) == set(CLASSES)
        for c in CLASSES:
            assert meta.evaluation["per_class"][c]["auc"] > 0.6
        report_dir = version_dir(models, "moderation", 2) / "evaluation"
        assert (report_dir / "report.md").is_file() and (report_dir / "plots" / "roc.png").is_file()
        (line,) = [json.loads(x) for x in promotions.read_text().splitlines()]
        assert (line["decision"], line["published_version"], line["forced"]) == ("accept", 2, False)

        # The server picks the new version and serves it.
        config = make_config(models, tmp_path / "serving-audit.sqlite3", allow=(host.allow_entry,))
        running = ServerThread(config).start()
        try:
            with running.channel() as channel:
                response = running.stub(channel).Classify(
                    pb.ClassifyRequest(
                        post_id="p",
                        images=[
                            pb.ImageInput(id="a", url=host.url("/sexual/3.png")),
                            pb.ImageInput(id="b", content=class_image("ham", 2)),
                        ],
                    ),
                    timeout=30,
                )
        finally:
            running.stop()
        assert response.model_version == "2"
        assert [pb.ImageStatusCode.Name(r.status.code) for r in response.results] == ["IMAGE_OK", "IMAGE_OK"]
        assert set(response.results[0].scores) == set(CLASSES)

    # make evaluate: the serving version, and version 1 as a candidate against it.
    from training.retrain import evaluate_versions

    cfg = Config.smoke().with_overrides([f"promote.log_path={promotions}"])
    results = evaluate_versions(
        dataset,
        models,
        "moderation",
        cfg,
        tmp_path / "reports",
        version_dir(models, "moderation", 1),
        log=lambda _: None,
    )
    assert results["serving"]["version"] == 2 and not results["candidate"]["decision"]["accept"]
    assert (tmp_path / "reports" / "moderation-v2" / "report.html").is_file()
    assert (tmp_path / "reports" / "candidate-1" / "plots" / "pr.png").is_file()
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert summary["candidate"]["decision"]["accept"] is False

    # A worse candidate (the constant model again) is refused and leaves version 2 serving...
    from training.retrain import finish_run
    from training.train import LoopState, TrainResult, _load_arrays

    weights = [np.zeros_like(w) for w in _load_arrays(run / "best.weights.npz")]
    worse = TrainResult(tmp_path / "worse-run", weights, LoopState(), 0, "eval", "float32")
    logged: list[str] = []
    published, decision = finish_run(worse, dataset, models, "moderation", cfg, force=False, log=logged.append)
    assert published is None and not decision.accept
    assert any("AUC drops" in reason for reason in decision.reasons)
    assert list_versions(models, "moderation") == [1, 2]
    assert any(line.startswith("NOT published") for line in logged)
    # ... unless forced, which is logged.
    published, _ = finish_run(worse, dataset, models, "moderation", cfg, force=True, log=logged.append)
    assert published is not None and published.name == "3" and list_versions(models, "moderation") == [1, 2, 3]
    lines = [json.loads(x) for x in promotions.read_text().splitlines()]
    assert [(x["decision"], x["forced"], x["published_version"]) for x in lines] == [
        ("accept", False, 2),
        ("refuse", False, None),
        ("refuse", True, 3),
    ]
    assert load_metadata(published).training["promotion"]["forced"] is True
    assert dataclasses.asdict(worse.state)["global_step"] == 0
