"""The stages that make a release's network, each reading the previous stages' files (never memory):
1-scan, 2-prune, 3-finetune, 4-judge, 5-checkpoint. Each ends with :meth:`Release.mark_done`."""

from __future__ import annotations

from nst_core.compress.budget import budgeted_prune, measure_speedup
from nst_core.compress.finetune import checkpoint_metrics, finetune
from nst_core.compress.importance import calibration_pairs
from nst_core.compress.pruning import Profile, prune
from nst_core.compress.scan.plots import plot_scan
from nst_core.compress.scan.run import run_scan
from nst_core.compress.scan.table import merge_scan, write_tables
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.model.checkpoint import read_checkpoint_info, save_checkpoint
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weight_spec import is_random_source
from nst_core.nst.cost import CostModel, iteration_macs
from nst_core.workflows.release.folder import CHECKPOINT_NAME, Release, read_json, to_json
from nst_core.workflows.release.report import plot_pareto


def scan_stage(release: Release) -> None:
    """1-scan: the structured sensitivity of every conv, then its tables and plots."""
    folder = release.stage_dir("1-scan")
    pairs = calibration_pairs(release.images[0])
    root = release.image_folder()
    content = [str(root / pairs[0][0].name)]
    styles = list(dict.fromkeys(str(root / style.name) for _, style in pairs))[:2]
    config = release.settings.scan_config(content, styles)
    run_scan(config, folder / "scan", progress=False, device=release.device)
    table = merge_scan(folder / "scan")
    if table.missing:
        raise UserError(f"the scan in {folder / 'scan'} left {len(table.missing)} cells unfinished; run again")
    written = write_tables(table, folder) + plot_scan(table, folder)
    release.mark_done("1-scan", [p.name for p in written])


def prune_stage(release: Release) -> None:
    """2-prune: widths for the budget from the scan's curves; the uniform L1 baseline beside it."""
    s, folder = release.settings, release.stage_dir("2-prune")
    folder.mkdir(parents=True, exist_ok=True)
    result = budgeted_prune(
        release.teacher,
        target_speedup=s.target_speedup,
        importance=s.importance,
        images=release.calibration_images(),
        scan=release.stage_dir("1-scan") / "scan",
        size=s.cost_size,
        calibration_size=s.calibration_size,
        preset=s.preset,
        levels=tuple(s.levels),
    )
    # The scan is named relative to OUT_DIR: a release's files must not depend on where OUT_DIR lies.
    for source in (result.curves.source, result.plan.curves_source, result.pruned.provenance["budget"]["curves"]):
        source["scan"] = "1-scan/scan"
    save_checkpoint(result.pruned, folder / "pruned.safetensors", encoding="packed", dtype="fp32")
    uniform = prune(release.teacher, Profile.uniform("structured", release.teacher.conv_names, s.uniform_fraction))
    save_checkpoint(uniform, folder / "uniform.safetensors", encoding="packed", dtype="fp32")
    plan = {"plan": result.plan.to_dict(), "importance": result.importance, "curves": result.curves.to_dict()}
    atomic_write_text(folder / "plan.json", to_json(plan))
    if s.measure_iterations:
        speed = measure_speedup(
            release.teacher,
            load_checkpoint(folder / "pruned.safetensors", device=release.device),
            size=s.cost_size,
            iterations=s.measure_iterations,
            preset=s.preset,
        )
        release.record_timing(
            "speed",
            {
                **speed.to_dict(),
                "predicted_speedup": result.plan.predicted_speedup,
                "device": str(resolve_device(release.device)),
            },
        )
    release.mark_done("2-prune", ["pruned.safetensors", "uniform.safetensors", "plan.json"])


def finetune_stage(release: Release) -> None:
    """3-finetune: distil the dense network into the budgeted one (resumes from ``state.pt``)."""
    s, folder = release.settings, release.stage_dir("3-finetune")
    folder.mkdir(parents=True, exist_ok=True)
    student = load_checkpoint(release.stage_dir("2-prune") / "pruned.safetensors", device=release.device)
    train, heldout = release.images
    state = folder / "state.pt"
    result = finetune(
        release.teacher,
        student,
        train,
        heldout,
        s.finetune_config(),
        s.recovery_config(),
        state_path=state,
        progress=None,
    )
    record = student.provenance["finetune"]
    # Wall-clock facts differ between an interrupted and an uninterrupted run: timings.json only.
    release.record_timing(
        "finetune",
        {key: record.pop(key) for key in ("train_seconds", "wall_seconds_this_run", "resumed_from_step")},
    )
    assert result.after is not None  # the run went to its end (no stop_after) in this single process
    save_checkpoint(
        student,
        folder / "finetuned.safetensors",
        encoding="packed",
        dtype="fp32",
        metrics=checkpoint_metrics(result.after),
    )
    atomic_write_text(
        folder / "finetune.json",
        to_json(
            {"before": result.before, "after": result.after, "table": result.table, "history": result.train.history}
        ),
    )
    state.unlink(missing_ok=True)
    release.mark_done("3-finetune", ["finetuned.safetensors", "finetune.json"])


def judge_stage(release: Release) -> None:
    """4-judge: every candidate on the held-out images, and the Pareto plot of cost against judged quality."""
    s, folder = release.settings, release.stage_dir("4-judge")
    folder.mkdir(parents=True, exist_ok=True)
    candidates = {
        "dense": release.teacher,
        f"uniform L1 {s.uniform_fraction:.0%}": load_checkpoint(
            release.stage_dir("2-prune") / "uniform.safetensors", device=release.device
        ),
        f"budgeted {s.importance}": load_checkpoint(
            release.stage_dir("2-prune") / "pruned.safetensors", device=release.device
        ),
        f"budgeted {s.importance} + fine-tune": load_checkpoint(
            release.stage_dir("3-finetune") / "finetuned.safetensors", device=release.device
        ),
    }
    meter = release.meter()
    cost = CostModel.macs_only()
    rows = []
    for name, model in candidates.items():
        rows.append(
            {
                "name": name,
                "widths": model.widths,
                "predicted_speedup": cost.speedup(model.widths, s.cost_size, s.cost_size),
                "macs": iteration_macs(model.widths, s.cost_size, s.cost_size),
                **meter.measure(model),
            }
        )
    judge = {
        "heldout_images": [im.name for im in release.images[1]],
        "cost_size": s.cost_size,
        "candidates": rows,
        "random_weights": is_random_source(s.weights),
    }
    atomic_write_text(folder / "judge.json", to_json(judge))
    plot_pareto(rows, folder / "pareto.png", s.cost_size, is_random_source(s.weights))
    release.mark_done("4-judge", ["judge.json", "pareto.png"])


def checkpoint_stage(release: Release) -> None:
    """5-checkpoint: the fine-tuned network in the release dtype, judged again as it decodes."""
    s, folder = release.settings, release.stage_dir("5-checkpoint")
    folder.mkdir(parents=True, exist_ok=True)
    tuned = load_checkpoint(release.stage_dir("3-finetune") / "finetuned.safetensors", device="cpu")
    after = read_json(release.stage_dir("3-finetune") / "finetune.json")["after"]
    save_checkpoint(
        tuned, folder / CHECKPOINT_NAME, encoding="packed", dtype=s.dtype, metrics=checkpoint_metrics(after)
    )
    decoded = release.meter().measure(load_checkpoint(folder / CHECKPOINT_NAME, device=release.device))
    info = read_checkpoint_info(folder / CHECKPOINT_NAME)
    atomic_write_text(
        folder / "final.json",
        to_json(
            {
                "dtype": s.dtype,
                "bytes": info["file_bytes"],
                "decoded": decoded,
                "fp32": after,
                "quantisation": info.get("quantisation"),
            }
        ),
    )
    release.mark_done("5-checkpoint", [CHECKPOINT_NAME, "final.json"])
