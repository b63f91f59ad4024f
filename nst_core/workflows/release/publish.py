"""The stages that publish a release: 6-card (report, model card and plots in one folder) and 7-push (to the Hub)."""

from __future__ import annotations

import json
import shutil

from huggingface_hub import HfApi

from nst_core.core.files import atomic_write_text
from nst_core.model.checkpoint import read_checkpoint_info
from nst_core.model.hub.card import PLOT_NAME, render_model_card
from nst_core.model.hub.config import config_from_info
from nst_core.model.hub.errors import hub_error
from nst_core.model.hub.push import push_checkpoint
from nst_core.workflows.release.folder import CHECKPOINT_NAME, Release, to_json
from nst_core.workflows.release.report import release_report, report_markdown


def card_stage(release: Release, repo_id: str | None) -> None:
    """6-card: report.json and report.md, and the card folder (model card, plots, config, checkpoint)."""
    folder = release.stage_dir("6-card")
    card = folder / "card"
    card.mkdir(parents=True, exist_ok=True)
    report = release_report(release)
    markdown = report_markdown(report)
    atomic_write_text(release.out / "report.json", to_json(report))
    atomic_write_text(release.out / "report.md", markdown)
    checkpoint = release.stage_dir("5-checkpoint") / CHECKPOINT_NAME
    shutil.copyfile(checkpoint, card / CHECKPOINT_NAME)
    shutil.copyfile(release.stage_dir("1-scan") / "curves.png", card / PLOT_NAME)
    shutil.copyfile(release.stage_dir("1-scan") / "heatmap.png", card / "heatmap.png")
    shutil.copyfile(release.stage_dir("4-judge") / "pareto.png", card / "pareto.png")
    info = read_checkpoint_info(checkpoint)
    atomic_write_text(card / "config.json", json.dumps(config_from_info(info, CHECKPOINT_NAME), indent=2) + "\n")
    atomic_write_text(card / "report.json", to_json(report))
    atomic_write_text(card / "report.md", markdown)
    sizes = {p.name: p.stat().st_size for p in sorted(card.iterdir()) if p.name != "README.md"}
    model_card = render_model_card(
        info, repo_id or f"local/{release.out.resolve().name}", CHECKPOINT_NAME, sizes, has_plot=True
    )
    body = (
        str(model_card)
        + "\n\n## Release report\n\n![Pareto plot](pareto.png)\n\n![Sensitivity heatmap](heatmap.png)\n\n"
        + markdown.split("\n", 1)[1]
    )
    atomic_write_text(card / "README.md", body)
    release.mark_done("6-card", [f"card/{p.name}" for p in sorted(card.iterdir())], {"repo_id": repo_id})


def push_stage(release: Release, repo_id: str, private: bool | None = None) -> dict:
    """7-push: the checkpoint with its card (``nst_core.model.hub.push.push_checkpoint``), then the release's
    report and plots."""
    card = release.stage_dir("6-card") / "card"
    first = push_checkpoint(
        repo_id,
        card / CHECKPOINT_NAME,
        plot=card / PLOT_NAME,
        private=private,
        commit_message=f"nst release: {CHECKPOINT_NAME} ({release.settings.target_speedup}x budget)",
    )
    try:  # push_checkpoint writes the plain card; the release's card adds the report and its plots
        commit = HfApi().upload_folder(
            repo_id=repo_id,
            folder_path=card,
            allow_patterns=["README.md", "pareto.png", "heatmap.png", "report.*"],
            commit_message="nst release: report, Pareto plot and sensitivity heatmap",
        )
    except Exception as exc:
        raise hub_error(exc, f"pushing the release report to {repo_id}") from None
    pushed = {
        "repo_id": repo_id,
        "repo_url": first.repo_url,
        "checkpoint_commit": first.commit,
        "report_commit": commit.oid,
        "commit_url": commit.commit_url,
    }
    atomic_write_text(release.out / "7-push" / "push.json", to_json(pushed))
    return pushed
