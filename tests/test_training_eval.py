"""Evaluation, thresholds, the workload figure, the drift baseline, promotion rules, the config
and the report, on hand-made score lists whose answers are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from server.audit.drift import Baseline
from training import evaluate, promote, report
from training.config import Config, PromoteConfig
from training.metrics import roc_auc

CLASSES = ("ham", "sexual", "personal_info")


def known_scores() -> tuple[np.ndarray, np.ndarray]:
    """30 images, 10 per class, with hand-chosen sexual and personal_info scores."""
    labels = np.repeat([0, 1, 2], 10)
    sexual = np.r_[np.arange(1, 11) / 100, np.arange(55, 101, 5) / 100, np.arange(11, 21) / 100]
    personal = np.r_[np.arange(1, 11) * 2 / 100, np.arange(21, 31) / 100, np.arange(5, 96, 10) / 100]
    scores = np.stack([np.clip(1 - sexual - personal, 0, 1), sexual, personal], axis=1).astype(np.float32)
    return scores, labels


def up(x: float) -> float:
    return float(np.nextafter(np.float32(x), np.float32(np.inf)))


def test_thresholds_at_target_fpr_are_exact():
    scores, labels = known_scores()
    cfg = Config().with_overrides(
        ['eval.class_target_fpr={"personal_info": 0.1}', "eval.review_range=[0.0, 1.0]", "eval.block_range=[0.0, 1.0]"]
    )
    result = evaluate.evaluate_scores(scores, labels, cfg)
    # sexual: 20 negatives 0.01..0.20; 5% of 20 = 1 may score above the threshold: just over 0.19.
    # personal_info at 10%: negatives 0.02..0.20 and 0.21..0.30, two may pass: just over 0.28.
    # block at 0.5%: none may: just over the highest negative.
    assert result["thresholds"] == {
        "sexual": {"review": up(0.19), "block": up(0.20)},
        "personal_info": {"review": up(0.28), "block": up(0.30)},
    }
    sexual = result["per_class"]["sexual"]["thresholds"]
    assert (sexual["review_recall"], sexual["review_fpr"], sexual["target_fpr"]) == (1.0, 0.05, 0.05)
    personal = result["per_class"]["personal_info"]["thresholds"]
    # personal_info rows score 0.05, 0.15, ..., 0.95: seven are above 0.28.
    assert (personal["review_recall"], personal["review_fpr"], personal["block_recall"]) == (0.7, 0.1, 0.7)

    clamped = evaluate.evaluate_scores(scores, labels, Config())
    # The default clamps: review at least 0.2, block at least 0.5.
    assert clamped["thresholds"] == {
        "sexual": {"review": 0.2, "block": 0.5},
        "personal_info": {"review": up(0.29), "block": 0.5},
    }


def test_workload_figure_on_known_badness():
    # Two classes: the badness is the "bad" score itself.
    ham = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    bad = [0.35, 0.55, 0.65, 0.75, 0.8, 0.85, 0.9, 0.92, 0.97, 0.99]
    scores = np.array([[1 - s, s] for s in ham + bad])
    labels = np.array([0] * 10 + [1] * 10)
    w = evaluate.workload(scores, labels, ["ham", "bad"], "ham", max_miss_rate=0.1, benign_share=0.9)
    # One bad image of ten may pass: everything under 0.55 passes.
    assert w["badness_threshold"] == 0.55 and w["miss_rate"] == 0.1 and w["benign_pass_rate"] == 0.5
    assert w["pass_share_eval_mix"] == 0.3 and w["pass_share"] == pytest.approx(0.9 * 0.5 + 0.1 * 0.1)
    strict = evaluate.workload(scores, labels, ["ham", "bad"], "ham", max_miss_rate=0.02, benign_share=0.9)
    assert strict["badness_threshold"] == 0.35 and strict["miss_rate"] == 0.0
    assert strict["pass_share"] == pytest.approx(0.9 * 0.3)
    # benign_share 0: the evaluation split's own mix.
    own = evaluate.workload(scores, labels, ["ham", "bad"], "ham", max_miss_rate=0.1, benign_share=0.0)
    assert own["pass_share"] == pytest.approx(own["pass_share_eval_mix"])


def test_curves_average_precision_and_calibration():
    s = np.array([0.9, 0.8, 0.7, 0.6])
    positive = np.array([True, False, True, False])
    curve, ap = evaluate.precision_recall(s, positive)
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert curve["precision"] == [1.0, 1.0, 0.5, 2 / 3, 0.5] and curve["recall"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    roc = evaluate.roc_curve(s, positive)
    assert roc["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0] and roc["tpr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = float(np.sum(np.diff(roc["fpr"]) * (np.array(roc["tpr"][1:]) + np.array(roc["tpr"][:-1])) / 2))
    assert area == pytest.approx(roc_auc(s[positive], s[~positive])) == pytest.approx(0.75)
    rel = evaluate.reliability(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 1, 1, 1]), bins=10)
    assert rel["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert sum(rel["count"]) == 4


def test_drift_baseline_is_what_the_server_reads():
    scores, labels = known_scores()
    result = evaluate.evaluate_scores(scores, labels, Config())
    baseline = result["score_baseline"]
    parsed = Baseline.from_metadata(baseline)
    assert parsed is not None and set(parsed.classes) == set(CLASSES)
    assert len(baseline["bin_edges"]) == 11
    for hist in baseline["histograms"].values():
        assert sum(hist) == pytest.approx(1.0)
    assert set(baseline["decision_mix"]) == {"PASS", "REVIEW", "BLOCK"}
    assert sum(baseline["decision_mix"].values()) == pytest.approx(1.0)
    # Reweighted to 90% benign: the ham rows carry 90% of the mass.
    assert baseline["production_benign_share"] == 0.9
    ham_top = baseline["class_mix"]["ham"]
    assert ham_top == pytest.approx(
        0.9 * float((scores[labels == 0].argmax(1) == 0).mean())
        + 0.1 * float((scores[labels != 0].argmax(1) == 0).mean())
    )


def evaluation(aucs: dict[str, float], pass_share: float) -> dict:
    return {"per_class": {c: {"auc": a} for c, a in aucs.items()}, "workload": {"pass_share": pass_share}}


def test_promotion_refuses_worse_and_accepts_better():
    cfg = PromoteConfig(max_auc_drop=0.005, max_workload_drop=0.0)
    serving = evaluation({"ham": 0.9, "sexual": 0.9, "personal_info": 0.9}, 0.5)
    assert promote.compare(evaluation({"ham": 0.95, "sexual": 0.93, "personal_info": 0.91}, 0.6), serving, cfg).accept
    assert promote.compare(evaluation({"ham": 0.9, "sexual": 0.896, "personal_info": 0.9}, 0.5), serving, cfg).accept
    worse_auc = promote.compare(evaluation({"ham": 0.95, "sexual": 0.894, "personal_info": 0.95}, 0.7), serving, cfg)
    assert not worse_auc.accept and "sexual AUC drops" in worse_auc.reasons[0]
    worse_workload = promote.compare(
        evaluation({"ham": 0.95, "sexual": 0.95, "personal_info": 0.95}, 0.49), serving, cfg
    )
    assert not worse_workload.accept and "workload" in worse_workload.reasons[0]
    assert worse_workload.comparison["workload"]["delta"] == pytest.approx(-0.01)
    assert promote.compare(evaluation({"ham": 0.5}, 0.0), None, cfg).accept
    changed = promote.compare(serving, serving, cfg, ["ham", "sexual"], list(CLASSES))
    assert not changed.accept and "class list changed" in changed.reasons[0]


def test_promotion_log_is_appended(tmp_path):
    cfg = PromoteConfig(log_path=str(tmp_path / "log" / "promotions.jsonl"))
    promote.log_decision(cfg, {"decision": "refuse", "forced": False})
    promote.log_decision(cfg, {"decision": "refuse", "forced": True})
    lines = [json.loads(line) for line in (tmp_path / "log" / "promotions.jsonl").read_text().splitlines()]
    assert [line["forced"] for line in lines] == [False, True] and all("time" in line for line in lines)


def test_config_variants_overrides_and_files(tmp_path):
    smoke, default = Config.smoke(), Config.default()
    assert smoke.variant == "smoke" and smoke.train.epochs < default.train.epochs
    assert smoke.data.input_size < default.data.input_size
    cfg = default.with_overrides(
        [
            "train.epochs=2",
            "train.head=sigmoid",
            "augment.flip=false",
            'eval.class_target_fpr={"sexual": 0.01}',
            "promote.log_path=x.jsonl",
        ]
    )
    assert (cfg.train.epochs, cfg.train.head, cfg.augment.flip, cfg.target_fpr("sexual"), cfg.target_fpr("ham")) == (
        2,
        "sigmoid",
        False,
        0.01,
        0.05,
    )
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert Config.load(path) == cfg
    path.write_text(json.dumps({"variant": "smoke", "train": {"epochs": 1}}))
    assert Config.load(path) == Config.smoke().with_overrides(["train.epochs=1"])
    with pytest.raises(ValueError, match="not a field"):
        default.with_overrides(["train.epoch=3"])
    with pytest.raises(ValueError, match="head"):
        default.with_overrides(["train.head=relu"])


def test_demo_config_and_each_configs_smoke_variant(tmp_path):
    from training.__main__ import build_parser, load_config

    demo, demo_smoke = Config.demo(), Config.variant_named("demo", smoke=True)
    assert demo.variant == "demo" and demo_smoke.variant == "demo-smoke"
    # make model's network: softmax at the default input size, from its own generated images.
    assert demo.train.head == demo_smoke.train.head == "softmax"
    assert demo.data.input_size == demo_smoke.data.input_size == Config.default().data.input_size
    assert demo.data.demo_per_class > demo_smoke.data.demo_per_class > 0 and demo.data.demo_seed == 0
    assert demo_smoke.train.epochs < demo.train.epochs
    assert Config.variant_named("default", smoke=True) == Config.smoke()

    def parsed(*argv: str) -> Config:
        return load_config(build_parser().parse_args(["train", *argv]))

    assert parsed() == Config.default() and parsed("--smoke") == Config.smoke()
    assert parsed("--config-name", "demo") == demo
    assert parsed("--config-name", "demo", "--smoke", "--set", "train.epochs=2") == demo_smoke.with_overrides(
        ["train.epochs=2"]
    )
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"variant": "demo", "train": {"epochs": 1}}))
    assert parsed("--config", str(path)) == demo.with_overrides(["train.epochs=1"])
    assert parsed("--config", str(path), "--smoke").variant == "demo-smoke"


def test_report_files(tmp_path):
    scores, labels = known_scores()
    result = evaluate.evaluate_scores(scores, labels, Config())
    comparison = {
        "auc": {c: {"serving": 0.5, "candidate": 0.9, "delta": 0.4} for c in CLASSES},
        "workload": {"serving": 0.1, "candidate": 0.2, "delta": 0.1},
        "note": "same images",
        "decision": {"accept": True, "reasons": ["better"]},
    }
    path = report.write_report(tmp_path / "r", result, "Evaluation", {"name": "m", "version": 3}, comparison)
    text = path.read_text()
    assert "| class | images | ROC AUC |" in text and "Decision: **publish**" in text
    assert "<table>" in (tmp_path / "r" / "report.html").read_text()
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["evaluation"]["thresholds"] == result["thresholds"]
    for name in ("roc", "pr", "confusion", "reliability", "histograms"):
        with Image.open(tmp_path / "r" / "plots" / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 200
