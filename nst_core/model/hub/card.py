"""The model card: ``hub_cards/model_card.md.j2`` rendered for one checkpoint, with huggingface_hub's metadata.

The metadata follows ``ModelCardData``: ``base_model`` (the Hub repo of the weights the network
was made from), ``pipeline_tag`` image-feature-extraction, ``library_name`` pytorch, and the
judged metrics as ``model-index``.

>>> base_model_of("hf:me/vgg19-caffe:vgg19-caffe.safetensors@a1b2")
'me/vgg19-caffe'
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nst_core.model.hub.errors import HubError
from nst_core.model.layers import DENSE_CONV_WEIGHTS, DENSE_WIDTHS, conv_weight_counts
from nst_core.model.weight_spec import WeightSpecError, is_random_source, parse_weight_spec

PLOT_NAME = "sensitivity.png"


def _template_path(name: str) -> Path:
    """A card template: in a wheel it ships as the package data ``nst_core.hub_cards``; in a
    checkout it is the top-level ``hub_cards/`` folder the design card lays out."""
    if importlib.util.find_spec("nst_core.hub_cards") is not None:
        return Path(str(importlib.resources.files("nst_core.hub_cards") / name))
    return Path(__file__).resolve().parents[3] / "hub_cards" / name


TEMPLATE_PATH = _template_path("model_card.md.j2")
#: VGG-19's weights (Simonyan & Zisserman) are released under CC BY 4.0; pruned copies inherit it.
DEFAULT_LICENSE = "cc-by-4.0"
#: The card's tags; the architecture's name (vgg19 or vgg16) goes after the first two.
CARD_TAGS = ["neural-style-transfer", "style-transfer", "pruning", "safetensors", "nst-core"]
#: The Hub task of a network that turns images into feature maps (the Hub's list of pipeline tags).
PIPELINE_TAG = "image-feature-extraction"
#: The library the Hub knows these files by: plain PyTorch code (model-libraries has no nst_core).
LIBRARY_NAME = "pytorch"
#: Hub repos of the named weight sources, for ``base_model`` (the model tree). torchvision's
#: IMAGENET1K_V1 VGG-19 is on the Hub as timm's port; the Caffe conversion is hosted with
#: ``nst weights convert`` + ``nst push``, after which checkpoints name that repo (``hf:`` source).
BASE_MODELS = {"torchvision": "timm/vgg19.tv_in1k", "torchvision-vgg16": "timm/vgg16.tv_in1k"}
#: What the judged metrics were measured on (``nst finetune``'s held-out calibration images).
JUDGE_DATASET = {"dataset_type": "nst-core/calibration-heldout", "dataset_name": "nst_core held-out calibration images"}
MiB = 2**20


def _dense_counts(info: dict) -> tuple[int, int]:
    """(conv weights, fp32 bytes of weights + biases) of the unpruned trunk up to the same last layer."""
    weights = sum(DENSE_CONV_WEIGHTS[name] for name in info["widths"])
    biases = sum(DENSE_WIDTHS[name] for name in info["widths"])
    return weights, (weights + biases) * 4


def base_model_of(weight_source: str | None) -> str | None:
    """The Hub repo a network's weights came from, for the card's ``base_model``; None when there is none.

    >>> base_model_of("hf:me/vgg19-caffe:vgg19-caffe.safetensors@a1b2"), base_model_of("torchvision")
    ('me/vgg19-caffe', 'timm/vgg19.tv_in1k')
    """
    try:
        parsed = parse_weight_spec(str(weight_source or ""))
    except WeightSpecError:
        return None  # "unset", "caffe:vgg19-d01eb7cb.pth" (a converted file): no Hub repo to name
    if parsed.kind == "hub":
        return parsed.repo
    return BASE_MODELS.get(parsed.name) if parsed.kind == "named" and parsed.name else None


def eval_results(metrics: dict, is_random: bool) -> list[EvalResult]:
    """The judged metrics as huggingface_hub ``EvalResult``s (the card's ``model-index``); numbers only."""
    task = "Neural style transfer features" + (" (random weights: not meaningful)" if is_random else "")
    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name=task,
            metric_type=key,
            metric_name=key,
            metric_value=value,
            dataset_type=JUDGE_DATASET["dataset_type"],
            dataset_name=JUDGE_DATASET["dataset_name"],
        )
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def render_model_card(
    info: dict,
    repo_id: str,
    filename: str,
    file_sizes: dict[str, int],
    license: str = DEFAULT_LICENSE,
    has_plot: bool = False,
    base_model: str | None = None,
) -> ModelCard:
    """A ``huggingface_hub.ModelCard`` from ``hub_cards/model_card.md.j2`` for one checkpoint.

    ``info`` is ``read_checkpoint_info``'s dict; ``file_sizes`` maps every file pushed with it to its bytes.
    The metadata follows huggingface_hub's ``ModelCardData``: ``base_model`` (default: the Hub repo
    of the weights it was made from, see :func:`base_model_of`), ``pipeline_tag``
    image-feature-extraction, and the judged metrics as ``model-index``.

    >>> sizes = {path.name: path.stat().st_size}  # doctest: +SKIP
    >>> card = render_model_card(read_checkpoint_info(path), "me/x", path.name, sizes)  # doctest: +SKIP
    """
    if not TEMPLATE_PATH.is_file():
        raise HubError(f"model card template {TEMPLATE_PATH} is missing: the nst-core installation is incomplete")
    is_random = is_random_source(str(info.get("weight_source", "")))
    dense_weights, dense_bytes = _dense_counts(info)
    return ModelCard.from_template(
        _card_data(info, repo_id, license, base_model, is_random),
        template_path=str(TEMPLATE_PATH),
        repo_id=repo_id,
        filename=filename,
        info=info,
        layers=_layer_rows(info),
        weights_total=info.get("conv_weights", 0),
        weights_kept=info.get("conv_weights_kept", 0),
        dense_weights=dense_weights,
        files=[{"name": n, "bytes": b, "mib": b / MiB} for n, b in file_sizes.items()],
        dense_fp32_mib=dense_bytes / MiB,
        checkpoint_mib=file_sizes[filename] / MiB,
        metrics=info.get("metrics") or {},
        provenance=info.get("provenance") or {},
        preprocessing=info["preprocessing"],
        is_random=is_random,
        structured=bool(info.get("structured")),
        has_plot=has_plot,
        plot_name=PLOT_NAME,
    )


def _card_data(info: dict, repo_id: str, license: str, base_model: str | None, is_random: bool) -> ModelCardData:
    """The card's YAML header: library, licence, task, tags, ``base_model`` and the judged metrics."""
    results = eval_results(info.get("metrics") or {}, is_random)
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=license,
        pipeline_tag=PIPELINE_TAG,
        tags=[*CARD_TAGS[:2], info.get("arch", "vgg19"), *CARD_TAGS[2:]],
        base_model=base_model or base_model_of(info.get("weight_source")),
        model_name=repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
    )


def _layer_rows(info: dict) -> list[dict]:
    """One row of the card's layer table per conv: width against the dense one, weights kept, sparsity."""
    sparsity = info.get("sparsity", {})
    rows = []
    for name, weights in conv_weight_counts(info["widths"]).items():
        rows.append(
            {
                "name": name,
                "width": info["widths"][name],
                "dense_width": DENSE_WIDTHS[name],
                "weights": weights,
                "kept": round(weights * (1.0 - sparsity.get(name, 0.0))),
                "sparsity": sparsity.get(name, 0.0),
            }
        )
    return rows


def folder_card(folder: Path, info: dict, repo_id: str, filename: str, **options: Any) -> ModelCard:
    """The card of a repo folder's checkpoint, listing every file beside it (the card itself aside)."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != "README.md"}
    return render_model_card(info, repo_id, filename, sizes, **options)
