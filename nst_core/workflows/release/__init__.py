"""`nst release`: dense weights to a judged, documented, optionally published fast network, in resumable stages.

Each stage writes into its own folder under OUT_DIR and ends by writing ``done.json`` (the
settings' hash and the SHA-256 of every file it made). A run skips the stages that are done
and whose files are intact, and redoes the others; the two long stages continue where they
stopped (the scan from its records, fine-tuning from its state file). Every stage reads its
inputs from the previous stages' files, never from memory, so a run killed anywhere (kill -9
included) and run again ends with the same files as a run never interrupted.

1-scan        structured sensitivity scan of every conv (proxy by default, full on request):
              ``table.csv``, ``table.json``, ``curves.png``, ``heatmap.png`` (``scan/`` is the scan folder)
2-prune       budgeted structured pruning for the target speedup, curves from the scan, filters
              ranked by the chosen importance: ``pruned.safetensors``, ``plan.json``; and the
              uniform L1 network of the same budget's old recipe, ``uniform.safetensors``
3-finetune    distillation from the dense network: ``finetuned.safetensors``, ``finetune.json``
4-judge       held-out images (never scanned, ranked or trained on): distortion and the judged
              style transfer of every candidate, ``judge.json``, ``pareto.png``
5-checkpoint  the release file in the chosen dtype, judged again as decoded: ``model.safetensors``,
              ``final.json``
6-card        ``card/``: the model card (``README.md``, from ``nst_core.model.hub.card``), its plots, config
              and report
7-push        optional: the card folder to a Hub repo, ``push.json``

``report.md`` and ``report.json`` in OUT_DIR summarise every stage with the settings. Wall-clock
numbers (the measured speedup, training seconds, where a run resumed) differ from run to run,
so they go to ``timings.json`` and the scan's own records (``1-scan/scan/records``), and nowhere
else.

The parts: :mod:`.settings` (:class:`ReleaseSettings`), :mod:`.folder` (:class:`Release`: the
folder, its ``done.json`` records and shared inputs), :mod:`.stages` (1-5), :mod:`.report`
(``report.json``, ``report.md``, the Pareto plot), :mod:`.publish` (6-card, 7-push) and :mod:`.run`
(:func:`run_release`).

>>> settings = ReleaseSettings(weights="random:0", target_speedup=3.0, steps=20)   # doctest: +SKIP
>>> run_release("out/release", settings)                                            # doctest: +SKIP

May import: everything below ``workflows``; the package's modules import only those listed before them.
"""

from nst_core.workflows.release.folder import RELEASE_FORMAT, STAGES, TIMING_FILES, Release
from nst_core.workflows.release.report import plot_pareto, report_markdown
from nst_core.workflows.release.run import run_release
from nst_core.workflows.release.settings import ReleaseSettings

__all__ = [
    "RELEASE_FORMAT",
    "STAGES",
    "TIMING_FILES",
    "Release",
    "ReleaseSettings",
    "plot_pareto",
    "report_markdown",
    "run_release",
]
