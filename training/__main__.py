"""The retraining pipeline's command line (docs/retraining.md).

    python -m training dataset  --dataset DIR [--audit-url URL]... [--export FILE]... [--demo-per-class N]
                                [--refreeze]
    python -m training train    --dataset DIR [--run DIR] [--restart]
    python -m training evaluate --dataset DIR [--models M --name N] [--candidate VERSION_DIR] [--out DIR]
    python -m training promote  --dataset DIR --run DIR [--models M --name N] [--force]
    python -m training run      (dataset, train, evaluate, promote: what `make train` runs)
    python -m training benchmark  (the demo benchmark: both heads and a baseline; docs/retraining.md)

Every command takes the config flags: --smoke (the CI-sized variant), --config FILE (JSON, any
subset of Config's fields) and --set section.field=value (repeatable). Exit status: 0 done
(for run and promote: published); 2 bad input; 3 the candidate was refused by the promotion
rules (nothing published); 4 the audit store is unavailable."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from training.config import Config

EXIT_REFUSED = 3
EXIT_STORE_DOWN = 4


class StepLog:
    """One line per step, each with the seconds since the command started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f}s] {message}", flush=True)


def load_config(args: argparse.Namespace) -> Config:
    cfg = Config.load(args.config) if args.config else (Config.smoke() if args.smoke else Config.default())
    if args.config and args.smoke:
        cfg = Config.from_dict(json.loads(Path(args.config).read_text()), base=Config.smoke())
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
    if args.demo_per_class:
        from training import demo_data

        out = Path(args.demo_dir or f"data/demo/seed{args.demo_seed}-n{args.demo_per_class}")
        labels = demo_data.write_demo_dataset(out, args.demo_per_class, seed=args.demo_seed)
        log(f"demo data: {args.demo_per_class} images per class (seed {args.demo_seed}) in {out}")
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
    return 0 if version is not None else EXIT_REFUSED


def cmd_run(args: argparse.Namespace, cfg: Config, log) -> int:
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
        p.add_argument("--smoke", action="store_true", help="the small CI variant of the config")
        p.add_argument("--config", help="JSON file of config fields (any subset)")
        p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override one config field")
        p.add_argument("--dataset", type=Path, default=Path("data/datasets/moderation"), help="dataset directory")

    def with_sources(p: argparse.ArgumentParser) -> None:
        p.add_argument("--audit-url", action="append", help="audit store: sqlite:///path or postgresql://...")
        p.add_argument("--audit-url-if-exists", action="append", help="the same, skipped if the SQLite file is absent")
        p.add_argument("--export", action="append", help="verdict export file (.jsonl or .csv)")
        p.add_argument("--demo-per-class", type=int, default=0, help="add N generated demo images per class")
        p.add_argument(
            "--demo-seed", type=int, default=1, help="demo generator seed (1: other images than `make model`'s seed 0)"
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

    p = commands.add_parser("run", help="dataset, train, evaluate and promote: make train")
    common(p)
    with_sources(p)
    with_run(p)
    with_models(p)
    p.add_argument("--force", action="store_true", help="publish even if the promotion rules refuse (logged)")
    p.add_argument("--skip-dataset", action="store_true", help="train on the dataset as it is")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("benchmark", help="the demo benchmark; writes its figures into docs/retraining.md")
    common(p)
    p.add_argument("--per-class", type=int, default=2000, help="benchmark images per class")
    p.add_argument("--out", type=Path, default=Path("var/benchmark"), help="work directory")
    p.add_argument("--doc", type=Path, default=Path("docs/retraining.md"), help="file whose markers get the figures")
    p.add_argument("--heads", default="softmax,sigmoid", help="heads to train and compare")
    p.add_argument("--note", default="", help="a remark printed with the figures (e.g. what else ran)")
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="file whose markers get the main table")
    p.add_argument("--from-results", help="write an earlier run's results.json into the documents again")
    p.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything imports TensorFlow: its C++ start-up chatter buries the step log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    log = StepLog()
    try:
        cfg = load_config(args)
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
