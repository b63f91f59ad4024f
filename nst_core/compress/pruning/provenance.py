"""What a pruned network records about its pruning (``model.provenance``), for checkpoints and model cards."""

from __future__ import annotations

from nst_core.model.vgg import VGGFeatures


def stamp(model: VGGFeatures, method: str, sparsity: dict[str, float], extra: dict | None = None) -> None:
    """Record ``method`` and the realised per-conv ``sparsity`` (plus ``extra`` facts) in ``model.provenance``.

    A network pruned twice by different methods keeps both stories: ``"structured+fine"``, with
    the earlier sparsity under ``"structured_sparsity"``.
    """
    provenance = dict(model.provenance)
    previous = provenance.get("method")
    if previous and previous != method:
        # Structured then fine is a valid pipeline; keep both stories.
        provenance[f"{previous}_sparsity"] = provenance.get("sparsity")
        method_label = f"{previous}+{method}"
    else:
        method_label = method
    provenance.update({"method": method_label, "sparsity": dict(sparsity)})
    provenance.update(extra or {})
    model.provenance = provenance
