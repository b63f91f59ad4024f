"""Running a release: every stage that is not done yet, in order, then the optional push."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from nst_core.model.weight_spec import check_repo_id
from nst_core.workflows.release.folder import Release
from nst_core.workflows.release.publish import card_stage, push_stage
from nst_core.workflows.release.settings import ReleaseSettings
from nst_core.workflows.release.stages import checkpoint_stage, finetune_stage, judge_stage, prune_stage, scan_stage


def run_release(
    out_dir: str | Path,
    settings: ReleaseSettings,
    push: str | None = None,
    private: bool | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Release:
    """Run every stage that is not done yet (see the module docstring); returns the release.

    ``push`` (a Hub repo id) adds the push stage; it is checked before any work.
    """
    if push:
        check_repo_id(push)
    release = Release(out_dir, settings, device, log or (lambda line: print(line, file=sys.stderr)))
    release.claim_folder()
    steps: tuple[tuple[str, Callable[[], None]], ...] = (
        ("1-scan", lambda: scan_stage(release)),
        ("2-prune", lambda: prune_stage(release)),
        ("3-finetune", lambda: finetune_stage(release)),
        ("4-judge", lambda: judge_stage(release)),
        ("5-checkpoint", lambda: checkpoint_stage(release)),
        ("6-card", lambda: card_stage(release, push)),
    )
    for stage, run in steps:
        if release.is_done(stage, {"repo_id": push} if stage == "6-card" else None):
            release.log(f"{stage}: done (kept)")
            continue
        release.log(f"{stage}: running")
        started = time.perf_counter()
        run()
        release.record_timing(f"stage {stage}", {"seconds": round(time.perf_counter() - started, 2)})
    if push:
        pushed = push_stage(release, push, private)
        release.log(
            f"pushed to {pushed['repo_url']} "
            f"(commits {pushed['checkpoint_commit'][:10]}, {pushed['report_commit'][:10]})"
        )
    return release
