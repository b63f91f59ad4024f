"""The release report: everything the stages found, as ``report.json`` and ``report.md``, and the Pareto plot.

Read from the stages' files only; no wall-clock numbers (those are in ``timings.json``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from nst_core.compress.finetune import METHODS, recovery_table
from nst_core.model.weight_spec import is_random_source
from nst_core.workflows.release.folder import CHECKPOINT_NAME, RELEASE_FORMAT, Release, read_json


def release_report(release: Release) -> dict:
    """Everything the stages found, with the settings (no wall-clock numbers: those are in timings.json)."""
    stage = release.stage_dir
    scan_table = read_json(stage("1-scan") / "table.json")
    return {
        "format": RELEASE_FORMAT,
        "settings": release.settings.to_dict(),
        "random_weights": is_random_source(release.settings.weights),
        "heldout_images": [im.name for im in release.images[1]],
        "scan": {
            "mode": "full" if release.settings.full_scan else "proxy",
            "cells": len(scan_table.get("rows", [])),
            "rank_agreement": scan_table.get("agreement"),
            "plots": ["1-scan/curves.png", "1-scan/heatmap.png"],
        },
        "plan": read_json(stage("2-prune") / "plan.json")["plan"],
        "finetune": {k: v for k, v in read_json(stage("3-finetune") / "finetune.json").items() if k != "history"},
        "judge": read_json(stage("4-judge") / "judge.json"),
        "checkpoint": read_json(stage("5-checkpoint") / "final.json"),
        "files": {
            "checkpoint": f"5-checkpoint/{CHECKPOINT_NAME}",
            "card": "6-card/card/README.md",
            "pareto": "4-judge/pareto.png",
            "timings": "timings.json",
        },
    }


def plot_pareto(rows: list[dict], path: Path, cost_size: int, random_weights: bool) -> Path:
    """Predicted speedup (x) against judged style-loss ratio and SSIM on held-out images (y), one point per
    candidate."""
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "style_ratio", "judged style-loss ratio vs dense output (1 = dense)"),
        (axes[1], "ssim", "SSIM vs dense output (1 = identical)"),
    ):
        # A legend, not labels beside the points: the pruned, fine-tuned and stored networks share one speedup.
        for row, marker in zip(rows, itertools.cycle("osD^vP*X")):
            ax.scatter(row["predicted_speedup"], row[key], s=40, marker=marker, label=row["name"], alpha=0.8)
        ax.set_xlabel(f"predicted speedup per iteration at {cost_size} px (MACs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    note = " (random weights: mechanical numbers)" if random_weights else ""
    fig.suptitle(f"Cost against judged quality on held-out images{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def report_markdown(report: dict) -> str:
    """report.md: the release in a page (the same facts as report.json)."""
    s = report["settings"]
    lines = ["# Release report", ""]
    if report["random_weights"]:
        lines += [
            f"**Made with random weights (`{s['weights']}`): every number below is mechanically right and "
            "visually meaningless.**",
            "",
        ]
    lines += _widths_section(report) + _judged_section(report) + _finetune_section(report)
    lines += _checkpoint_section(report)
    lines += [
        "",
        "Plots: `1-scan/curves.png`, `1-scan/heatmap.png`, `4-judge/pareto.png`. Model card: `6-card/card/README.md`. "
        "Measured speedup and training time: `timings.json` (wall-clock numbers, which differ from run to run).",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(s, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _widths_section(report: dict) -> list[str]:
    """The target and the widths the budget chose, beside the dense ones."""
    s, plan = report["settings"], report["plan"]
    lines = [
        f"Target: {s['target_speedup']}x fewer MACs per stylization iteration at {s['cost_size']} px; "
        f"filters ranked by `{s['importance']}` importance; {report['scan']['mode']} scan of "
        f"{report['scan']['cells']} cells; held-out images: {', '.join(report['heldout_images'])}.",
        "",
        "## Widths chosen",
        "",
        f"Predicted speedup {plan['predicted_speedup']:.2f}x "
        f"({plan['predicted_macs']:,} of {plan['dense_macs']:,} MACs).",
        "",
        "| conv | width | dense |",
        "|---|---:|---:|",
    ]
    for candidate in report["judge"]["candidates"]:
        if candidate["name"] == "dense":
            dense_widths = candidate["widths"]
    return lines + [f"| {name} | {width} | {dense_widths.get(name, '')} |" for name, width in plan["widths"].items()]


def _judged_section(report: dict) -> list[str]:
    """One table row per candidate network, judged on the held-out images."""
    lines = [
        "",
        "## Judged on held-out images",
        "",
        "| network | predicted speedup | style ratio | content ratio | SSIM | feature distortion |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["judge"]["candidates"]:
        lines.append(
            f"| {c['name']} | {c['predicted_speedup']:.2f}x | {c['style_ratio']:.4f} | {c['content_ratio']:.4f} | "
            f"{c['ssim']:.4f} | {c['feature']:.4f} |"
        )
    return lines


def _finetune_section(report: dict) -> list[str]:
    """The fine-tuning run and its before/after recovery table."""
    s, ft = report["settings"], report["finetune"]
    objective = s.get("objective", "distill")  # reports written before the setting existed
    return [
        "",
        "## Fine-tuning",
        "",
        f"{s['steps']} steps of batch {s['batch_size']} at {s['crop_size']} px, lr {s['lr']}, "
        f"objective {objective} ({METHODS[objective]}).",
        "",
        "```",
        recovery_table(ft["before"], ft["after"]),
        "```",
        "",
    ]


def _checkpoint_section(report: dict) -> list[str]:
    """The released file, judged as it decodes, and its quantisation error."""
    ck = report["checkpoint"]
    lines = [
        "## Checkpoint",
        "",
        f"`{report['files']['checkpoint']}`: {ck['bytes']:,} bytes ({ck['bytes'] / 2**20:.2f} MiB), "
        f"packed, {ck['dtype']}. Judged as decoded: style ratio {ck['decoded']['style_ratio']:.4f}, "
        f"SSIM {ck['decoded']['ssim']:.4f} (fp32: {ck['fp32']['style_ratio']:.4f}, {ck['fp32']['ssim']:.4f}).",
    ]
    if ck.get("quantisation"):
        errors = ck["quantisation"]["relative_error"]
        lines.append(
            f"Quantisation error per conv: mean {sum(errors.values()) / len(errors):.4f}, "
            f"max {max(errors.values()):.4f}."
        )
    return lines
