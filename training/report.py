"""The evaluation report: Markdown and HTML pages with PNG plots, and a JSON of every figure.

    <dir>/report.md, report.html, report.json
    <dir>/plots/roc.png, pr.png, confusion.png, reliability.png, histograms.png

The same blocks render to Markdown and to HTML, so the two never disagree."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

Block = tuple


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def blocks_for(
    evaluation: dict[str, Any],
    title: str,
    model_info: dict[str, Any],
    comparison: dict[str, Any] | None,
    plots: dict[str, str],
) -> list[Block]:
    out: list[Block] = [("h1", title)]
    info = ", ".join(f"{k}: {v}" for k, v in model_info.items() if v not in (None, ""))
    out.append(("p", info))
    counts = evaluation["class_counts"]
    out.append(
        (
            "p",
            f"Frozen evaluation split: {evaluation['examples']} images ("
            + ", ".join(f"{c} {n}" for c, n in counts.items())
            + f"); accuracy {_fmt(evaluation['accuracy'])}; "
            f"top-label ECE {_fmt(evaluation['top_label_ece'])}.",
        )
    )

    w = evaluation["workload"]
    out.append(("h2", "Workload"))
    out.append(
        (
            "p",
            f"Missing at most {_pct(w['max_miss_rate'])} of bad images (measured: {_pct(w['miss_rate'])}), "
            f"the model passes {_pct(w['benign_pass_rate'])} of benign images with no human look: "
            f"**{_pct(w['pass_share'])} of all images** at a production mix of "
            f"{_pct(w['production_benign_share'])} benign ({_pct(w['pass_share_eval_mix'])} at the evaluation "
            "split's mix). That is the share of the audit workload the model removes.",
        )
    )
    p = evaluation["policy"]
    out.append(
        (
            "p",
            "With the exported thresholds, as the server applies them: "
            f"{_pct(p['pass_share'])} passed, {_pct(p['miss_rate'])} of bad images missed; decisions at the "
            "production mix " + ", ".join(f"{d} {_pct(v)}" for d, v in p["decision_mix"].items()) + ".",
        )
    )

    out.append(("h2", "Per class"))
    rows = []
    for name, entry in evaluation["per_class"].items():
        t = entry.get("thresholds")
        rows.append(
            [
                name,
                str(entry["support"]),
                _fmt(entry["auc"]),
                _fmt(entry["average_precision"]),
                _fmt(entry["ece"]),
                _fmt(t["review"]) if t else "-",
                _pct(t["target_fpr"]) if t else "-",
                _pct(t["review_recall"]) if t else "-",
                _pct(t["review_fpr"]) if t else "-",
                _fmt(t["block"]) if t else "-",
                _pct(t["block_recall"]) if t else "-",
            ]
        )
    out.append(
        (
            "table",
            [
                "class",
                "images",
                "ROC AUC",
                "avg precision",
                "ECE",
                "review threshold",
                "target FPR",
                "recall",
                "FPR",
                "block threshold",
                "block recall",
            ],
            rows,
        )
    )

    out.append(("h2", "Confusion matrix (rows: true class, columns: top score)"))
    names = list(evaluation["per_class"])
    out.append(("table", ["", *names], [[names[i], *map(str, row)] for i, row in enumerate(evaluation["confusion"])]))

    if comparison:
        out.append(("h2", "Against the serving version"))
        out.append(("p", comparison.get("note", "")))
        crow = []
        for name, c in comparison["auc"].items():
            crow.append([name, _fmt(c["serving"]), _fmt(c["candidate"]), _fmt(c["delta"])])
        crow.append(
            [
                "workload (pass share)",
                _pct(comparison["workload"]["serving"]),
                _pct(comparison["workload"]["candidate"]),
                _fmt(comparison["workload"]["delta"]),
            ]
        )
        out.append(("table", ["figure", "serving", "candidate", "change"], crow))
        decision = comparison.get("decision")
        if decision:
            verdict = "publish" if decision["accept"] else "keep the serving version"
            out.append(("p", f"Decision: **{verdict}**. " + " ".join(decision["reasons"])))

    for key, caption in (
        ("roc", "ROC curves"),
        ("pr", "Precision-recall curves"),
        ("confusion", "Confusion matrix"),
        ("reliability", "Reliability (calibration)"),
        ("histograms", "Score histograms"),
    ):
        if key in plots:
            out.append(("h2", caption))
            out.append(("img", plots[key], caption))
    return out


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def to_html(blocks: list[Block]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            text = html.escape(block[1])
            # The one piece of Markdown the paragraphs use.
            while text.count("**") >= 2:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            parts.append(f"<p>{text}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            parts.append(f"<p><img src='{html.escape(block[1])}' alt='{html.escape(block[2])}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_plots(evaluation: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """PNG plots under out_dir/plots; returns {name: path relative to out_dir}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    per_class = evaluation["per_class"]
    names = list(per_class)
    written: dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(plots_dir / f"{name}.png", dpi=90)
        plt.close(fig)
        written[name] = f"plots/{name}.png"

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, entry in per_class.items():
        ax.plot(entry["roc"]["fpr"], entry["roc"]["tpr"], label=f"{name} (AUC {_fmt(entry['auc'], 3)})")
        t = entry.get("thresholds")
        if t:
            ax.plot([t["review_fpr"]], [t["review_recall"]], "o", color=ax.lines[-1].get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC, one class vs the rest")
    ax.legend(loc="lower right")
    save(fig, "roc")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, entry in per_class.items():
        ax.plot(
            entry["pr"]["recall"], entry["pr"]["precision"], label=f"{name} (AP {_fmt(entry['average_precision'], 3)})"
        )
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    save(fig, "pr")

    confusion = np.asarray(evaluation["confusion"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                str(confusion[i, j]),
                ha="center",
                va="center",
                color="white" if confusion[i, j] > confusion.max() / 2 else "black",
            )
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="top score", ylabel="true class", title="Confusion matrix")
    save(fig, "confusion")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    curves = [(f"{n} (ECE {_fmt(e['ece'], 3)})", e["reliability"]) for n, e in per_class.items()]
    curves.append((f"top label (ECE {_fmt(evaluation['top_label_ece'], 3)})", evaluation["top_label_reliability"]))
    for label, rel in curves:
        xs = [m for m in rel["mean_score"] if m is not None]
        ys = [o for m, o in zip(rel["mean_score"], rel["observed"], strict=True) if m is not None]
        ax.plot(xs, ys, "o-", label=label, markersize=3)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="mean score in bin", ylabel="observed frequency", title="Reliability")
    ax.legend(loc="upper left", fontsize=8)
    save(fig, "reliability")

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, (name, entry) in zip(axes[0], per_class.items(), strict=True):
        h = entry["score_histogram"]
        edges = np.asarray(h["bin_edges"])
        width = np.diff(edges)
        ax.bar(edges[:-1], h["negative"], width=width, align="edge", alpha=0.6, label="other classes")
        ax.bar(edges[:-1], h["positive"], width=width, align="edge", alpha=0.6, label=name)
        t = entry.get("thresholds")
        if t:
            ax.axvline(t["review"], color="orange", linestyle="--", label="review")
            ax.axvline(t["block"], color="red", linestyle="--", label="block")
        ax.set_yscale("log")
        ax.set(title=f"{name} score", xlabel="score")
        ax.legend(fontsize=7)
    save(fig, "histograms")
    return written


def write_report(
    out_dir: str | os.PathLike[str],
    evaluation: dict[str, Any],
    title: str,
    model_info: dict[str, Any],
    comparison: dict[str, Any] | None = None,
    plots: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Writes report.md, report.html, report.json (and the plots) into out_dir; returns report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = write_plots(evaluation, out) if plots else {}
    blocks = blocks_for(evaluation, title, model_info, comparison, written)
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks), encoding="utf-8")
    payload = {
        "title": title,
        "model": model_info,
        "evaluation": evaluation,
        "comparison": comparison,
        "plots": written,
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(_json_safe(payload), indent=1) + "\n", encoding="utf-8")
    return out / "report.md"
