"""The training pipeline's command line (docs/retraining.md): the demo model and retraining
alike go dataset -> train -> evaluate -> promote.

    python -m training dataset  --dataset DIR [--audit-url URL]... [--export FILE]... [--demo-per-class N]
                                [--refreeze]
    python -m training train    --dataset DIR [--run DIR] [--restart]
    python -m training evaluate --dataset DIR [--models M --name N] [--candidate VERSION_DIR] [--out DIR]
    python -m training promote  --dataset DIR --run DIR [--models M --name N] [--force]
    python -m training run      dataset, train, evaluate, promote; [--if-missing]: nothing to do when
                                the model already has a version
    python -m training benchmark  (the demo benchmark: both heads and a baseline; docs/retraining.md)
    python -m training quantize [VERSION_DIR] (opt-in int8 copy of a version; training/quantize.py)

    make model = python -m training run --config-name demo --if-missing --models models --name moderation
    make train = python -m training run --audit-url-if-exists URL --demo-per-class 1200 ...

Every command but quantize takes the config flags: --config-name (default, or demo: the demo
model from generated images only), --smoke (that config's small CI variant), --config FILE
(JSON, any subset of Config's fields) and --set section.field=value (repeatable). Exit status:
0 done (for run and promote: published, or nothing to do); 2 bad input; 3 the candidate was
refused by the promotion rules (nothing published; quantize: the int8 copy was refused); 4 the
audit store is unavailable."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from training.config import VARIANTS, Config

EXIT_REFUSED = 3
EXIT_STORE_DOWN = 4


class StepLog:
    """One line per step, each with the seconds since the command started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f}s] {message}", flush=True)


def load_config(args: argparse.Namespace) -> Config:
    """--config-name (or the variant a --config file names), made small by --smoke, then --config's
    fields, then --set."""
    data = json.loads(Path(args.config).read_text(encoding="utf-8")) if args.config else {}
    name = args.config_name or str(data.get("variant", "default"))
    cfg = Config.variant_named(name, smoke=args.smoke)
    if data:
        cfg = Config.from_dict({k: v for k, v in data.items() if k != "variant"}, base=cfg)
    return cfg.with_overrides(args.set or [])


def default_run_dir(dataset: Path, cfg: Config) -> Path:
    """One run directory per (dataset content, training config): re-running the same command
    after an interruption finds its checkpoints; other data or settings start a new run."""
    from training.dataset_builder import load_manifest
    from training.train import _training_fingerprint

    fingerprint = _training_fingerprint(cfg, load_manifest(dataset))
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    return Path("var/training/runs") / f"{dataset.name}-{cfg.train.head}-{digest}"


def sources_from(args: argparse.Namespace, cfg: Config, log) -> list:
    from training.dataset_builder import Source

    sources = [Source("audit", url) for url in args.audit_url or []]
    for url in args.audit_url_if_exists or []:
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            log(f"no audit store at {url}; going on without it")
        else:
            sources.append(Source("audit", url))
    sources += [Source("export", path) for path in args.export or []]
    per_class = cfg.data.demo_per_class if args.demo_per_class is None else args.demo_per_class
    seed = cfg.data.demo_seed if args.demo_seed is None else args.demo_seed
    if per_class:
        from training import demo_data

        out = Path(args.demo_dir or f"data/demo/seed{seed}-n{per_class}")
        started = time.monotonic()
        labels = demo_data.write_demo_dataset(out, per_class, seed=seed)
        log(f"demo data: {per_class} images per class (seed {seed}) in {out} ({time.monotonic() - started:.1f}s)")
        sources.append(Source("demo", os.fspath(labels)))
    sources += [Source("demo", path) for path in args.demo_labels or []]
    return sources


def cmd_dataset(args: argparse.Namespace, cfg: Config, log) -> int:
    from training.dataset_builder import build_dataset

    sources = sources_from(args, cfg, log)
    if not sources:
        log("no sources: give --audit-url, --export, --demo-per-class or --demo-labels")
        return 2
    build_dataset(args.dataset, sources, cfg, refreeze=args.refreeze, log=log)
    return 0


def cmd_train(args: argparse.Namespace, cfg: Config, log):
    from training.train import train

    run_dir = Path(args.run) if args.run else default_run_dir(Path(args.dataset), cfg)
    log(f"run directory {run_dir}")
    return train(args.dataset, run_dir, cfg, log=log, restart=args.restart)


def cmd_promote(args: argparse.Namespace, cfg: Config, log, result=None) -> int:
    from training.retrain import finish_run

    if result is None:
        # A finished run returns at once with its best weights; an unfinished one continues.
        result = cmd_train(args, cfg, log)
    version, _ = finish_run(result, args.dataset, args.models, args.name, cfg, args.force, log)
    if version is None:
        return EXIT_REFUSED
    from model.repository import load_metadata

    evaluation = load_metadata(version).evaluation
    log(
        f"held-out accuracy: {evaluation['accuracy']:.4f} on {evaluation['examples']} images of the "
        f"evaluation split (version {version.name} in {version})"
    )
    return 0


def cmd_run(args: argparse.Namespace, cfg: Config, log) -> int:
    if args.if_missing:
        from model.repository import list_versions

        existing = list_versions(args.models, args.name)
        if existing:
            log(f"{args.models / args.name} already has version(s) {existing}; nothing to do")
            return 0
    if not args.skip_dataset:
        code = cmd_dataset(args, cfg, log)
        if code:
            return code
    result = cmd_train(args, cfg, log)
    return cmd_promote(args, cfg, log, result)


def cmd_evaluate(args: argparse.Namespace, cfg: Config, log) -> int:
    from training.retrain import evaluate_versions

    out = Path(args.out or "var/evaluation")
    evaluate_versions(args.dataset, args.models, args.name, cfg, out, args.candidate, log)
    return 0


def cmd_benchmark(args: argparse.Namespace, cfg: Config, log) -> int:
    from training.benchmark import rerender, run_benchmark

    if args.from_results:
        rerender(args, cfg, log)
    else:
        run_benchmark(args, cfg, log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config-name", choices=sorted(VARIANTS), help="the config (default: default, or the --config file's)"
        )
        p.add_argument("--smoke", action="store_true", help="the small CI variant of the config")
        p.add_argument("--config", help="JSON file of config fields (any subset)")
        p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override one config field")
        p.add_argument("--dataset", type=Path, default=Path("data/datasets/moderation"), help="dataset directory")

    def with_sources(p: argparse.ArgumentParser) -> None:
        p.add_argument("--audit-url", action="append", help="audit store: sqlite:///path or postgresql://...")
        p.add_argument("--audit-url-if-exists", action="append", help="the same, skipped if the SQLite file is absent")
        p.add_argument("--export", action="append", help="verdict export file (.jsonl or .csv)")
        p.add_argument(
            "--demo-per-class", type=int, help="add N generated demo images per class (default: the config's)"
        )
        p.add_argument(
            "--demo-seed",
            type=int,
            help="demo generator seed (default: the config's; 1 for retraining: other images than the demo "
            "config's seed 0, which `make model` trains on)",
        )
        p.add_argument("--demo-dir", help="where the demo images go (default data/demo/seed<S>-n<N>)")
        p.add_argument("--demo-labels", action="append", help="an existing demo labels.csv")
        p.add_argument("--refreeze", action="store_true", help="draw a new evaluation split")

    def with_run(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", help="run directory (default: var/training/runs/<dataset>-<head>-<hash>)")
        p.add_argument("--restart", action="store_true", help="discard the run directory's checkpoints")

    def with_models(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", type=Path, default=Path("models"), help="model repository")
        p.add_argument("--name", default="moderation", help="model name in the repository")

    p = commands.add_parser("dataset", help="audit logs -> TFRecord dataset with a frozen evaluation split")
    common(p)
    with_sources(p)
    p.set_defaults(func=cmd_dataset)

    p = commands.add_parser("train", help="train (or resume) on a dataset")
    common(p)
    with_run(p)
    p.set_defaults(func=lambda a, c, log: (cmd_train(a, c, log), 0)[1])

    p = commands.add_parser("evaluate", help="evaluate the serving version (and a candidate) on the frozen split")
    common(p)
    with_models(p)
    p.add_argument("--candidate", help="a version directory to compare with the serving version")
    p.add_argument("--out", help="report directory (default var/evaluation)")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("promote", help="evaluate a run's model against the serving one and publish if not worse")
    common(p)
    with_run(p)
    with_models(p)
    p.add_argument("--force", action="store_true", help="publish even if the promotion rules refuse (logged)")
    p.set_defaults(func=cmd_promote)

    p = commands.add_parser("run", help="dataset, train, evaluate and promote: make model, make train")
    common(p)
    with_sources(p)
    with_run(p)
    with_models(p)
    p.add_argument("--force", action="store_true", help="publish even if the promotion rules refuse (logged)")
    p.add_argument("--skip-dataset", action="store_true", help="train on the dataset as it is")
    p.add_argument(
        "--if-missing", action="store_true", help="do nothing if the model already has a version (make model)"
    )
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("benchmark", help="the demo benchmark; writes its figures into docs/retraining.md")
    common(p)
    p.add_argument("--per-class", type=int, default=2000, help="demo images per class to train on")
    p.add_argument("--heldout-per-class", type=int, default=600, help="held-out benchmark images per class")
    p.add_argument("--out", type=Path, default=Path("var/benchmark"), help="work directory")
    p.add_argument("--doc", type=Path, default=Path("docs/retraining.md"), help="file whose markers get the figures")
    p.add_argument("--heads", default="softmax", help="heads to train and compare (softmax,sigmoid: both)")
    p.add_argument("--note", default="", help="a remark printed with the figures (e.g. what else ran)")
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="file whose markers get the main table")
    p.add_argument("--from-results", help="write an earlier run's results.json into the documents again")
    p.set_defaults(func=cmd_benchmark)

    from training import quantize

    p = commands.add_parser(
        "quantize",
        help="add an int8 copy of a version's ONNX model, kept only within an AUC margin",
        description=quantize.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quantize.add_arguments(p)
    p.set_defaults(func=lambda a, _cfg, log: quantize.run(a, log))
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything imports TensorFlow: its C++ start-up chatter buries the step log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    log = StepLog()
    try:
        # quantize takes no config: its figures are measured on a version that exists.
        cfg = load_config(args) if hasattr(args, "set") else None
        return args.func(args, cfg, log)
    except (ValueError, FileNotFoundError) as exc:
        log(f"error: {exc}")
        return 2
    except Exception as exc:
        from server.errors import AuditStoreUnavailable

        if isinstance(exc, AuditStoreUnavailable):
            log(f"error: audit store unavailable: {exc}")
            return EXIT_STORE_DOWN
        raise


if __name__ == "__main__":
    sys.exit(main())
