"""The steps after training: evaluate the candidate and the serving version on the frozen
evaluation split, write the report, decide, publish. Used by `python -m training run` (make
train) and `python -m training evaluate` (make evaluate)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import dataset_builder, evaluate, fusion, pipeline, promote, reading, report
from training.config import Config
from training.metrics import roc_auc
from training.train import TrainResult

Log = Callable[[str], None]
DEMO_WARNING = (
    "trained on demo data (training/demo_data.py): its 'sexual' class detects a synthetic stand-in "
    "(large smooth skin-tone shapes), not real sexual content; its 'personal_info' class detects "
    "contact-card layouts and misses most bare lines of text"
)


@dataclass
class EvalSet:
    images: np.ndarray
    labels: np.ndarray
    manifest: dict
    dataset_dir: Path | None = None
    _keys: list[str] | None = None

    def keys(self) -> list[str]:
        """sha256 per image, for the reader cache (read from the shards on first use)."""
        if self._keys is None:
            assert self.dataset_dir is not None
            self._keys = reading.split_keys(self.dataset_dir, "eval", self.manifest)
        return self._keys

    @property
    def split_id(self) -> str:
        return self.manifest["split"]["eval_split_id"]


def load_eval_set(dataset_dir: str | os.PathLike[str]) -> EvalSet:
    manifest = dataset_builder.load_manifest(dataset_dir)
    images, labels = pipeline.load_arrays(dataset_builder.split_files(dataset_dir, "eval", manifest))
    if len(labels) == 0:
        raise ValueError(f"dataset {dataset_dir} has an empty evaluation split")
    return EvalSet(images, labels, manifest, Path(dataset_dir))


_caches: dict[tuple[str, str], reading.ReaderCache] = {}


def reader_cache(dataset_dir: str | os.PathLike[str], cfg: Config, log: Log) -> reading.ReaderCache:
    """One cache per dataset and reader settings in this process: the serving version and the
    candidate are evaluated on the same readings."""
    config = fusion.reader_config(cfg)
    key = (os.fspath(Path(dataset_dir).resolve()), reading.fingerprint(config))
    if key not in _caches:
        _caches[key] = reading.ReaderCache(dataset_dir, config, log)
    return _caches[key]


def version_scores(
    version: str | os.PathLike[str], metadata: Any, eval_set: EvalSet, cfg: Config, log: Log
) -> np.ndarray:
    """A published version's scores on the split as the server gives them: the CNN's, with
    personal_info fused with the reader when the version carries a fusion."""
    from model.reader.fusion import Fusion

    scores = evaluate.score_version(version, eval_set.images)
    fusion_data = (metadata.reader or {}).get("fusion")
    if not fusion_data or eval_set.dataset_dir is None:
        return scores
    column = list(metadata.class_names).index(fusion.PERSONAL_INFO)
    vectors = reader_cache(eval_set.dataset_dir, cfg, log).vectors(eval_set.keys(), scores[:, column])
    return fusion.fused_scores(scores, vectors, Fusion.from_dict(fusion_data), column)


def fit_fusion_model(
    model: Any, dataset_dir: str | os.PathLike[str], manifest: dict, cfg: Config, log: Log
) -> fusion.Fitted:
    """Fits a candidate's fusion on the validation split (train when there is none)."""
    split = "validation" if dataset_builder.split_size(manifest, "validation") else "train"
    images, labels = pipeline.load_arrays(dataset_builder.split_files(dataset_dir, split, manifest))
    keys = reading.split_keys(dataset_dir, split, manifest)
    if cfg.fusion.fit_limit and len(keys) > cfg.fusion.fit_limit:
        limit = cfg.fusion.fit_limit
        images, labels, keys = images[:limit], labels[:limit], keys[:limit]
    cache = reader_cache(dataset_dir, cfg, log)
    return fusion.fit_on_split(split, keys, evaluate.score_keras(model, images), labels, cache.vectors, cfg)


def fit_fusion(
    model: Any, dataset_dir: str | os.PathLike[str], eval_set: EvalSet, scores: np.ndarray, cfg: Config, log: Log
) -> tuple[np.ndarray, fusion.Fitted | None]:
    """Fits the candidate's fusion and returns its fused evaluation scores."""
    if not fusion.applies(cfg):
        return scores, None
    fitted = fit_fusion_model(model, dataset_dir, eval_set.manifest, cfg, log)
    column = list(cfg.data.class_names).index(fusion.PERSONAL_INFO)
    vectors = reader_cache(dataset_dir, cfg, log).vectors(eval_set.keys(), scores[:, column])
    fused = fusion.fused_scores(scores, vectors, fitted.fusion, column)
    positive = eval_set.labels == column
    log(
        f"fusion fitted on {fitted.images} {fitted.split} images ({fitted.positives} personal_info); "
        f"evaluation personal_info AUC: CNN {roc_auc(scores[positive, column], scores[~positive, column]):.4f}"
        f" -> fused {roc_auc(fused[positive, column], fused[~positive, column]):.4f}"
    )
    return fused, fitted


def evaluate_serving(
    models: str | os.PathLike[str], name: str, eval_set: EvalSet, cfg: Config, log: Log
) -> tuple[Path | None, Any, dict | None]:
    """(version dir, metadata, evaluation) of the newest version, or (None, None, None)."""
    from model.repository import latest_version_dir, load_metadata

    version = latest_version_dir(models, name)
    if version is None:
        return None, None, None
    metadata = load_metadata(version)
    if list(metadata.class_names) != list(cfg.data.class_names):
        log(f"serving version {version} has classes {list(metadata.class_names)}, not {list(cfg.data.class_names)}")
        return version, metadata, None
    scores = version_scores(version, metadata, eval_set, cfg, log)
    evaluation = evaluate.evaluate_scores(scores, eval_set.labels, cfg)
    log(f"serving version {metadata.version}: " + figures_line(evaluation))
    return version, metadata, evaluation


def figures_line(evaluation: dict) -> str:
    aucs = ", ".join(f"{c} {e['auc']:.4f}" for c, e in evaluation["per_class"].items())
    w = evaluation["workload"]
    return (
        f"AUC {aucs}; workload {100 * w['pass_share']:.1f}% passed unseen at "
        f"{100 * w['max_miss_rate']:.0f}% missed; accuracy {evaluation['accuracy']:.4f}"
    )


def comparison_block(decision: promote.Decision, serving_meta: Any, eval_set: EvalSet) -> dict | None:
    if not decision.comparison:
        return (
            {
                "note": "",
                "auc": {},
                "workload": {"serving": None, "candidate": None, "delta": None},
                "decision": decision.to_dict(),
            }
            if serving_meta is not None
            else None
        )
    note = f"Serving version {serving_meta.version}, scored now on the same {len(eval_set.labels)} images."
    trained_on = (serving_meta.training.get("dataset") or {}).get("eval_split_id")
    if trained_on != eval_set.split_id:
        note += (
            " It was not trained on this dataset (or on another evaluation split), so it may have seen some of"
            " these images in training, which would flatter it."
        )
    return {**decision.comparison, "note": note, "decision": decision.to_dict()}


def training_summary(
    cfg: Config, result: TrainResult, manifest: dict, dataset_dir: str | os.PathLike[str] | None = None
) -> dict:
    state = result.state
    demo = any(s["kind"] == "demo" for s in manifest["sources"])
    sizes = {split: dataset_builder.split_size(manifest, split) for split in dataset_builder.SPLITS}
    return {
        **({"warning": DEMO_WARNING} if demo else {}),
        "pipeline": "training.train",
        "config_variant": cfg.variant,
        "config": cfg.to_dict(),
        "data": {
            "train_examples": sizes["train"],
            "validation_examples": sizes["validation"],
            "held_out_examples": sizes["eval"],
            "split": manifest["split"]["by"],
        },
        "dataset": {
            # Where to find the evaluation split again (training/quantize.py), as given to training.
            **({"path": os.fspath(dataset_dir)} if dataset_dir is not None else {}),
            "sources": manifest["sources"],
            "labels_sha256": manifest["labels_sha256"],
            "eval_split_id": manifest["split"]["eval_split_id"],
            "counts": manifest["counts"],
            "cleaning": manifest["cleaning"],
            "duplicates": manifest["duplicates"],
        },
        "head": cfg.train.head,
        "precision": result.precision,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch + 1,
        "stopped_early": state.stopped_early,
        "early_stopping_split": result.early_stopping_split,
        "steps": state.global_step,
        "seconds": round(state.train_seconds, 1),
        "history": state.history,
    }


def finish_run(
    result: TrainResult,
    dataset_dir: str | os.PathLike[str],
    models: str | os.PathLike[str],
    name: str,
    cfg: Config,
    force: bool,
    log: Log,
) -> tuple[Path | None, promote.Decision]:
    """Evaluates the trained candidate against the serving version, writes the report into the
    run directory, and publishes the candidate if the promotion rules (or `force`) allow."""
    from model.export import export_version
    from model.repository import ModelMetadata
    from training.train import build_float32_model

    eval_set = load_eval_set(dataset_dir)
    model = build_float32_model(cfg, result.weights)
    cnn_scores = evaluate.score_keras(model, eval_set.images)
    scores, fitted = fit_fusion(model, dataset_dir, eval_set, cnn_scores, cfg, log)
    evaluation = evaluate.evaluate_scores(scores, eval_set.labels, cfg)
    log(f"candidate ({cfg.train.head} head): " + figures_line(evaluation))
    _, serving_meta, serving_eval = evaluate_serving(models, name, eval_set, cfg, log)
    serving_classes = list(serving_meta.class_names) if serving_meta is not None else None
    decision = promote.compare(
        evaluation,
        serving_eval if serving_meta is not None else None,
        cfg.promote,
        list(cfg.data.class_names),
        serving_classes,
    )
    if serving_meta is not None and serving_eval is None and not decision.reasons:
        decision = promote.Decision(False, ["the serving version cannot be evaluated on this split"])

    report_dir = result.run_dir / "evaluation"
    shutil.rmtree(report_dir, ignore_errors=True)
    model_info = {
        "name": name,
        "version": "candidate",
        "head": cfg.train.head,
        "input size": cfg.data.input_size,
        "run": os.fspath(result.run_dir),
        "eval split": eval_set.split_id[:12],
        "training seconds": round(result.state.train_seconds),
    }
    report.write_report(
        report_dir,
        evaluation,
        f"Evaluation of the candidate for {name}",
        model_info,
        comparison_block(decision, serving_meta, eval_set),
        plots=cfg.eval.plots,
    )
    log(f"report: {report_dir / 'report.md'}")

    entry = {
        "model": name,
        "models": os.fspath(models),
        "run": os.fspath(result.run_dir),
        "serving_version": serving_meta.version if serving_meta is not None else None,
        "eval_split_id": eval_set.split_id,
        "decision": "accept" if decision.accept else "refuse",
        "reasons": decision.reasons,
        "forced": bool(force and not decision.accept),
    }
    if not decision.accept and not force:
        promote.log_decision(cfg.promote, {**entry, "published_version": None})
        log("NOT published; the serving version stays: " + "; ".join(decision.reasons))
        return None, decision
    if not decision.accept:
        log("publishing despite the promotion rules (--force): " + "; ".join(decision.reasons))

    metadata = ModelMetadata(
        name=name,
        version=0,
        class_names=list(cfg.data.class_names),
        input_size=cfg.data.input_size,
        head=cfg.train.head,
        benign_class=cfg.data.benign_class,
        thresholds=evaluation["thresholds"],
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        training={
            **training_summary(cfg, result, eval_set.manifest, dataset_dir),
            "promotion": {**decision.to_dict(), "forced": entry["forced"], "against_version": entry["serving_version"]},
        },
        evaluation={
            **evaluate.summary(evaluation),
            "split": "frozen evaluation split",
            "eval_split_id": eval_set.split_id,
            "report": "evaluation/report.md",
            # The network's own AUCs (per_class holds the served, fused personal_info): what an
            # engine-level check such as the int8 quantizer's compares with.
            "cnn_auc": {
                c: roc_auc(cnn_scores[eval_set.labels == i, i], cnn_scores[eval_set.labels != i, i])
                for i, c in enumerate(cfg.data.class_names)
            },
        },
        score_baseline=evaluation["score_baseline"],
        reader=fitted.metadata(fusion.reader_config(cfg)) if fitted is not None else {},
    )
    version_dir = export_version(
        model, metadata, models, name, check_with=eval_set.images[:32], extra_dirs={"evaluation": report_dir}
    )
    promote.log_decision(cfg.promote, {**entry, "published_version": int(version_dir.name)})
    log(f"published {version_dir}" + (" (forced)" if entry["forced"] else ""))
    return version_dir, decision


def evaluate_versions(
    dataset_dir: str | os.PathLike[str],
    models: str | os.PathLike[str],
    name: str,
    cfg: Config,
    out_dir: str | os.PathLike[str],
    candidate: str | os.PathLike[str] | None,
    log: Log,
) -> dict:
    """make evaluate: the serving version (and a candidate version directory, if given) on the
    frozen split; writes a report per model and returns {"serving": ..., "candidate": ...}."""
    from model.repository import load_metadata

    eval_set = load_eval_set(dataset_dir)
    out = Path(out_dir)
    results: dict[str, Any] = {}
    _, serving_meta, serving_eval = evaluate_serving(models, name, eval_set, cfg, log)
    if serving_meta is None:
        log(f"no version of {name} under {models}")
    elif serving_eval is not None:
        path = report.write_report(
            out / f"{name}-v{serving_meta.version}",
            serving_eval,
            f"Evaluation of {name} version {serving_meta.version}",
            {
                "name": name,
                "version": serving_meta.version,
                "head": serving_meta.head,
                "eval split": eval_set.split_id[:12],
            },
            plots=cfg.eval.plots,
        )
        log(f"report: {path}")
        results["serving"] = {"version": serving_meta.version, "report": os.fspath(path), "evaluation": serving_eval}
    if candidate is not None:
        meta = load_metadata(candidate)
        scores = version_scores(candidate, meta, eval_set, cfg, log)
        cand_eval = evaluate.evaluate_scores(scores, eval_set.labels, cfg)
        log(f"candidate {candidate}: " + figures_line(cand_eval))
        decision = promote.compare(
            cand_eval,
            serving_eval,
            cfg.promote,
            list(meta.class_names),
            list(serving_meta.class_names) if serving_meta else None,
        )
        path = report.write_report(
            out / f"candidate-{Path(candidate).name}",
            cand_eval,
            f"Evaluation of candidate {candidate}",
            {"name": meta.name, "version": meta.version, "head": meta.head, "eval split": eval_set.split_id[:12]},
            comparison_block(decision, serving_meta, eval_set) if serving_meta else None,
            plots=cfg.eval.plots,
        )
        log(
            f"report: {path}; promotion rules would "
            + ("accept" if decision.accept else "refuse")
            + " it: "
            + "; ".join(decision.reasons)
        )
        results["candidate"] = {
            "path": os.fspath(candidate),
            "report": os.fspath(path),
            "evaluation": cand_eval,
            "decision": decision.to_dict(),
        }
    (out / "summary.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps(
            report._json_safe({k: {kk: vv for kk, vv in v.items() if kk != "evaluation"} for k, v in results.items()}),
            indent=2,
        )
        + "\n"
    )
    return results
