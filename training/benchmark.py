"""The demo benchmark: both heads and a baseline, trained and measured in one run on the same data.

    python -m training benchmark [--per-class N] [--heads softmax,sigmoid] [--smoke] [--set ...]
    make benchmark-model

Generates the benchmark images (training/benchmark_data.py), builds a dataset from them (the
same builder as real audit data: duplicates, split by post, frozen evaluation split), trains
the CNN with each head and the baseline (training/baseline.py), evaluates all of them on the
same evaluation split, and writes the figures into docs/retraining.md between the benchmark
markers, with the date, the machine and the command. Work files go under var/benchmark/."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training import baseline, benchmark_data, dataset_builder, evaluate, pipeline
from training.config import Config
from training.thresholds import threshold_for_fpr

START_MARK = "<!-- benchmark:start -->"
END_MARK = "<!-- benchmark:end -->"
# The README shows the main table only, between its own markers.
README_MARKS = ("<!-- retraining-benchmark:start -->", "<!-- retraining-benchmark:end -->")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, cls: int, fpr: float) -> float:
    """Recall of class `cls` at the lowest threshold whose false-positive rate is <= fpr (no
    clamping, unlike the exported thresholds)."""
    positive = labels == cls
    threshold = threshold_for_fpr(scores[~positive, cls].astype(np.float32), fpr)
    return float((scores[positive, cls] >= threshold).mean()) if positive.any() else float("nan")


def by_variant(
    scores: np.ndarray, labels: np.ndarray, variants: list[str], cfg: Config, thresholds: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Per (class, variant): images, and the share the exported review thresholds flag."""
    decisions = evaluate.decide(scores, cfg.data.class_names, thresholds)
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(cfg.data.class_names):
        for variant in sorted({v for v, y in zip(variants, labels, strict=True) if y == c}):
            idx = [i for i, (v, y) in enumerate(zip(variants, labels, strict=True)) if y == c and v == variant]
            flagged = float(np.mean([decisions[i] != "PASS" for i in idx]))
            out.setdefault(name, {})[variant] = {"images": len(idx), "flagged": flagged}
    return out


def model_figures(
    scores: np.ndarray, labels: np.ndarray, cfg: Config, seconds: float, variants: list[str]
) -> dict[str, Any]:
    evaluation = evaluate.evaluate_scores(scores, labels, cfg)
    classes = list(cfg.data.class_names)
    return {
        "train_seconds": round(seconds, 1),
        "accuracy": evaluation["accuracy"],
        "auc": {c: evaluation["per_class"][c]["auc"] for c in classes},
        "average_precision": {c: evaluation["per_class"][c]["average_precision"] for c in classes},
        "ece": {c: evaluation["per_class"][c]["ece"] for c in classes},
        "recall_at_fpr": {
            c: recall_at_fpr(scores, labels, i, cfg.target_fpr(c))
            for i, c in enumerate(classes)
            if c != cfg.data.benign_class
        },
        "workload": evaluation["workload"],
        "thresholds": evaluation["thresholds"],
        "policy": evaluation["policy"],
        "by_variant": by_variant(scores, labels, variants, cfg, evaluation["thresholds"]),
    }


def _read_rows(labels_csv: Path) -> list[dict[str, str]]:
    import csv

    with open(labels_csv, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_heldout(labels_csv: Path, cfg: Config) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict[str, str]]:
    """The held-out benchmark images as the server decodes them: (images, labels, kinds,
    sha256 keys, sha256 -> path)."""
    import hashlib

    from model.preprocess import decode_image

    size = (cfg.data.input_size, cfg.data.input_size)
    classes = list(cfg.data.class_names)
    images, labels, kinds, keys, refs = [], [], [], [], {}
    for row in _read_rows(labels_csv):
        path = labels_csv.parent / row["path"]
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        images.append(decode_image(data, size))
        labels.append(classes.index(row["label"]))
        kinds.append(row.get("kind") or row.get("variant") or "standard")
        keys.append(sha)
        refs[sha] = os.fspath(path)
    return np.stack(images), np.array(labels), kinds, keys, refs


def rules_scores(scores: np.ndarray, vectors: np.ndarray, column: int) -> np.ndarray:
    """The reader's rules alone as a personal_info score: the most confident counted finding
    (0 without one); the other columns stay the CNN's so the table compares like with like."""
    from model.reader.features import READER_FEATURES

    found = [i for i, n in enumerate(READER_FEATURES) if n.startswith("max_")]
    out = np.array(scores, dtype=np.float32, copy=True)
    out[:, column] = vectors[:, found].max(axis=1)
    return out


def reader_cost(cache: Any, keys: list[str], kinds: list[str], labels: np.ndarray, classes: list[str]) -> dict:
    by_kind: dict[str, list[float]] = {}
    for sha, kind, y in zip(keys, kinds, labels.tolist(), strict=True):
        ms = cache.cost_ms(sha)
        if ms is not None:
            by_kind.setdefault(f"{classes[y]}/{kind}", []).append(ms)
    every = [v for values in by_kind.values() for v in values]
    return {
        "mean_ms": round(float(np.mean(every)), 1) if every else None,
        "by_kind_ms": {k: round(float(np.mean(v)), 1) for k, v in sorted(by_kind.items())},
    }


def run_benchmark(args: argparse.Namespace, cfg: Config, log) -> dict[str, Any]:
    """Trains on the demo generator's images (training fonts and backgrounds) and measures on
    the benchmark generator's held-out images (fonts and backgrounds training never saw)."""
    from training import demo_data, fusion, retrain

    started = time.monotonic()
    out = Path(args.out)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    timings: dict[str, float] = {}
    classes = list(cfg.data.class_names)

    t = time.monotonic()
    train_csv = demo_data.write_demo_dataset(out / "data" / f"train-n{args.per_class}", args.per_class, seed=3)
    heldout_csv = benchmark_data.write_benchmark_dataset(
        out / "data" / f"heldout-n{args.heldout_per_class}", args.heldout_per_class
    )
    timings["generate_seconds"] = round(time.monotonic() - t, 1)
    log(
        f"benchmark images: {args.per_class} per class to train on, {args.heldout_per_class} per class held out "
        f"({timings['generate_seconds']}s)"
    )

    t = time.monotonic()
    dataset_dir = out / "dataset"
    manifest = dataset_builder.build_dataset(
        dataset_dir, [dataset_builder.Source("demo", os.fspath(train_csv))], cfg, refreeze=True, log=log
    )
    timings["dataset_seconds"] = round(time.monotonic() - t, 1)
    eval_images, eval_labels, eval_kinds, eval_keys, refs = load_heldout(heldout_csv, cfg)
    heldout_cache = None
    if fusion.applies(cfg):
        from training.reading import ReaderCache

        heldout_cache = ReaderCache(out / "heldout-reader", fusion.reader_config(cfg), log, refs=refs)
    results: dict[str, Any] = {}

    from training.train import build_float32_model, train

    for head in heads:
        head_cfg = cfg.with_overrides([f"train.head={head}"])
        log(f"--- {head} head")
        result = train(dataset_dir, out / "runs" / head, head_cfg, log=log, restart=True)
        model = build_float32_model(head_cfg, result.weights)
        scores = evaluate.score_keras(model, eval_images)
        figures = model_figures(scores, eval_labels, head_cfg, result.state.train_seconds, eval_kinds)
        figures.update(
            epochs=result.state.epoch,
            best_epoch=result.state.best_epoch + 1,
            stopped_early=result.state.stopped_early,
            precision=result.precision,
        )
        results[f"cnn_{head}"] = figures
        log(
            f"{head}: AUC {figures['auc']}, workload {figures['workload']['pass_share']:.4f}, {figures['train_seconds']}s"
        )
        if heldout_cache is None:
            continue
        # The fusion is fitted on the training data's validation split, as `make train` does,
        # then applied to the held-out images.
        fitted = retrain.fit_fusion_model(model, dataset_dir, manifest, head_cfg, log)
        column = classes.index(fusion.PERSONAL_INFO)
        vectors = heldout_cache.vectors(eval_keys, scores[:, column])
        if "reader_rules" not in results:
            results["reader_rules"] = model_figures(
                rules_scores(scores, vectors, column), eval_labels, head_cfg, 0.0, eval_kinds
            )
        fused = fusion.fused_scores(scores, vectors, fitted.fusion, column)
        results[f"fused_{head}"] = model_figures(fused, eval_labels, head_cfg, result.state.train_seconds, eval_kinds)
        results[f"fused_{head}"]["fusion_weights"] = dict(
            zip(fitted.fusion.feature_names, (round(w, 3) for w in fitted.fusion.weights), strict=True)
        )
        log(f"fused {head}: AUC {results[f'fused_{head}']['auc']}")

    log("--- baseline: logistic regression on colour histograms + edge density")
    t = time.monotonic()
    train_images, train_labels = pipeline.load_arrays(dataset_builder.split_files(dataset_dir, "train", manifest))
    fitted_baseline = baseline.fit(
        baseline.features(train_images),
        train_labels,
        len(classes),
        class_weights=pipeline.class_weights(np.bincount(train_labels, minlength=len(classes))),
    )
    seconds = time.monotonic() - t
    scores = fitted_baseline.predict_proba(baseline.features(eval_images))
    results["baseline"] = model_figures(scores, eval_labels, cfg, seconds, eval_kinds)
    log(f"baseline: AUC {results['baseline']['auc']}, workload {results['baseline']['workload']['pass_share']:.4f}")

    summary = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "command": "python -m training benchmark " + shlex.join(sys.argv[2:]) if len(sys.argv) > 1 else "",
        "per_class": args.per_class,
        "heldout_per_class": args.heldout_per_class,
        "config_variant": cfg.variant,
        "input_size": cfg.data.input_size,
        "epochs_max": cfg.train.epochs,
        "dataset": {"counts": manifest["counts"], "duplicates": manifest["duplicates"]},
        "heldout": {
            "images": len(eval_labels),
            "counts": {c: int((eval_labels == i).sum()) for i, c in enumerate(classes)},
        },
        "reader_cost": reader_cost(heldout_cache, eval_keys, eval_kinds, eval_labels, classes)
        if heldout_cache
        else None,
        "timings": {**timings, "total_seconds": round(time.monotonic() - started, 1)},
        "results": results,
        "better_head": better_head(results, heads),
        "note": getattr(args, "note", ""),
    }
    (out / "results.json").write_text(json.dumps(_json_safe(summary), indent=1) + "\n")
    publish(args, summary, cfg, log)
    log(f"benchmark done in {summary['timings']['total_seconds']}s; better head: {summary['better_head']}")
    return summary


def publish(args: argparse.Namespace, summary: dict[str, Any], cfg: Config, log) -> None:
    if args.doc:
        write_doc(Path(args.doc), summary, cfg)
        log(f"figures written into {args.doc}")
    if getattr(args, "readme", None):
        write_doc(Path(args.readme), summary, cfg, marks=README_MARKS, compact=True)
        log(f"main table written into {args.readme}")


def rerender(args: argparse.Namespace, cfg: Config, log) -> dict[str, Any]:
    """Writes the figures of an earlier run's results.json into the documents again (after a
    change to the documents' text, say), without measuring anything."""
    summary = json.loads(Path(args.from_results).read_text())
    publish(args, summary, cfg, log)
    return summary


def better_head(results: dict[str, Any], heads: list[str]) -> str | None:
    """The head with the higher workload figure; mean AUC breaks near-ties (within 0.5 points)."""
    scored = []
    for head in heads:
        r = results.get(f"cnn_{head}")
        if r:
            scored.append((round(r["workload"]["pass_share"] / 0.005), float(np.mean(list(r["auc"].values()))), head))
    return max(scored)[2] if scored else None


def _json_safe(value: Any) -> Any:
    from training.report import _json_safe as safe

    return safe(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def render(summary: dict[str, Any], cfg: Config, compact: bool = False) -> str:
    classes = list(cfg.data.class_names)
    flagged = [c for c in classes if c != cfg.data.benign_class]
    results = summary["results"]
    names = {
        "cnn_softmax": "CNN, softmax head",
        "cnn_sigmoid": "CNN, sigmoid head",
        "reader_rules": "reader rules only (personal_info = most confident finding)",
        "fused_softmax": "CNN + reader, fused (softmax head)",
        "fused_sigmoid": "CNN + reader, fused (sigmoid head)",
        "baseline": "baseline: logistic regression on colour histograms + edge density",
    }
    counts = summary["dataset"]["counts"]
    lines = [
        f"Measured {summary['date']} on {summary['machine']} by `{summary['command'].strip()}` "
        f"(config `{summary['config_variant']}`, {summary['input_size']} px, at most {summary['epochs_max']} epochs "
        "with early stopping). "
        f"Trained on {summary['per_class']} demo images per class (training fonts and backgrounds; split by post: "
        + ", ".join(f"{s} {sum(c.values())}" for s, c in counts.items())
        + f"); measured on {summary.get('heldout', {}).get('images', '?')} held-out benchmark images whose fonts and "
        "backgrounds training never saw. "
        + (
            f"Reader CPU per held-out image: {summary['reader_cost']['mean_ms']} ms on average (gate only where it "
            "saw no text). "
            if summary.get("reader_cost")
            else ""
        )
        + f"Duplicate groups: {summary['dataset']['duplicates']['groups_with_duplicates']}. "
        f"Total time {summary['timings']['total_seconds'] / 60:.1f} min (images "
        f"{summary['timings']['generate_seconds']:.0f}s, dataset {summary['timings']['dataset_seconds']:.0f}s)."
        + (f" Note: {summary['note']}" if summary.get("note") else ""),
        "",
        "| model | "
        + " | ".join(f"AUC {c}" for c in classes)
        + " | "
        + " | ".join(f"recall {c} @ {_pct(cfg.target_fpr(c))} FPR" for c in flagged)
        + f" | workload: passed unseen @ {_pct(cfg.eval.max_miss_rate)} missed | {cfg.data.benign_class} passed unseen"
        " at that miss rate | accuracy | training time |",
        "|---" * (len(classes) + len(flagged) + 5) + "|",
    ]
    for key, r in results.items():
        lines.append(
            f"| {names.get(key, key)} | "
            + " | ".join(f"{r['auc'][c]:.4f}" for c in classes)
            + " | "
            + " | ".join(_pct(r["recall_at_fpr"][c]) for c in flagged)
            + f" | {_pct(r['workload']['pass_share'])} | {_pct(r['workload'].get('benign_pass_rate'))}"
            + f" | {r['accuracy']:.4f} | {r['train_seconds'] / 60:.1f} min |"
        )
    lines += [
        "",
        f"Workload at a production mix of {_pct(cfg.eval.production_benign_share)} benign images "
        "(evaluation split reweighted). Better head on this benchmark: "
        f"**{summary['better_head']}**.",
        "",
    ]
    if compact:
        return "\n".join(
            [
                *lines[:-1],
                "Details, and the figures by kind of image: "
                "[docs/retraining.md](docs/retraining.md#the-demo-benchmark).",
            ]
        )
    variants = [(c, v) for c in classes for v in next(iter(results.values()))["by_variant"].get(c, {})]
    lines.append("Share flagged (REVIEW or BLOCK at the exported thresholds) by kind of image:")
    lines.append("")
    lines.append("| class | kind | images | " + " | ".join(names.get(k, k).split(":")[0] for k in results) + " |")
    lines.append("|---" * (3 + len(results)) + "|")
    for c, v in variants:
        row = [c, v, str(next(iter(results.values()))["by_variant"][c][v]["images"])]
        row += [_pct(r["by_variant"].get(c, {}).get(v, {}).get("flagged")) for r in results.values()]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_doc(
    doc: Path,
    summary: dict[str, Any],
    cfg: Config,
    marks: tuple[str, str] = (START_MARK, END_MARK),
    compact: bool = False,
) -> None:
    start, end = marks
    text = doc.read_text(encoding="utf-8") if doc.is_file() else f"{start}\n{end}\n"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    block = f"{start}\n{render(summary, cfg, compact)}\n{end}"
    doc.write_text(pattern.sub(lambda _: block, text, count=1), encoding="utf-8")
