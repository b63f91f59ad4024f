"""Moving checkpoints, weights and the Space through the Hugging Face Hub.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``,
``hf_hub_download``), so the token comes from the usual places (the ``HF_TOKEN`` variable or
``hf auth login``) and downloads use the normal cache (``HF_HUB_OFFLINE=1`` works once cached).
This module never reads, prints or writes the token.

>>> result = push_checkpoint("me/vgg19-seed-pruned", "seed.safetensors")   # doctest: +SKIP
>>> model = load_from_hub("me/vgg19-seed-pruned", revision=result.commit)  # doctest: +SKIP

Importing this module also gives ``VGGFeatures`` (re-exported here) huggingface_hub's
``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` in the same format: ``NstHubFormat``
below is registered with ``nst_core.model.vgg``, which sits in a lower layer and cannot import it.

>>> model = VGGFeatures.from_pretrained("me/vgg19-seed-pruned")  # doctest: +SKIP
>>> model.push_to_hub("me/copy", delete_patterns="*.safetensors")  # doctest: +SKIP

Every load asks for the repo's config.json first: the Hub counts a model's downloads by it.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from nst_core.core.errors import UserError
from nst_core.core.files import file_sha256
from nst_core.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint

# VGGFeatures is also re-exported from here: imported from this module, its Hub methods work (see NstHubFormat).
from nst_core.model.vgg import (
    DENSE_CONV_WEIGHTS,
    DENSE_WIDTHS,
    PREPROCESSINGS,
    VGGFeatures,
    conv_weight_counts,
    register_hub_format,
)
from nst_core.model.weight_spec import WeightSpecError, check_repo_id, is_random_source, parse_weight_spec
from nst_core.model.weights import (
    CONFIG_NAME,
    DEFAULT_HUB_FILE,
    HubError,
    WeightsError,
    checkpoint_named,
    hub_download,
    hub_error,
    hub_file,
    match_state_dict,
    read_state_dict,
)

PLOT_NAME = "sensitivity.png"
# Package data (declared in pyproject.toml), so a wheel install renders cards as a checkout does.


def _template_path(name: str) -> Path:
    """A card template: in a wheel it ships as the package data ``nst_core.hub_cards``; in a
    checkout it is the top-level ``hub_cards/`` folder the design card lays out."""
    if importlib.util.find_spec("nst_core.hub_cards") is not None:
        return Path(str(importlib.resources.files("nst_core.hub_cards") / name))
    return Path(__file__).resolve().parents[2] / "hub_cards" / name


TEMPLATE_PATH = _template_path("model_card.md.j2")
#: VGG-19's weights (Simonyan & Zisserman) are released under CC BY 4.0; pruned copies inherit it.
DEFAULT_LICENSE = "cc-by-4.0"
CARD_TAGS = ["neural-style-transfer", "style-transfer", "vgg19", "pruning", "safetensors", "nst-core"]
#: The Hub task of a network that turns images into feature maps (the Hub's list of pipeline tags).
PIPELINE_TAG = "image-feature-extraction"
#: The library the Hub knows these files by: plain PyTorch code (model-libraries has no nst_core).
LIBRARY_NAME = "pytorch"
#: Hub repos of the named weight sources, for ``base_model`` (the model tree). torchvision's
#: IMAGENET1K_V1 VGG-19 is on the Hub as timm's port; the Caffe conversion is hosted with
#: ``nst weights convert`` + ``nst push``, after which checkpoints name that repo (``hf:`` source).
BASE_MODELS = {"torchvision": "timm/vgg19.tv_in1k"}
#: What the judged metrics were measured on (``nst finetune``'s held-out calibration images).
JUDGE_DATASET = {"dataset_type": "nst-core/calibration-heldout", "dataset_name": "nst_core held-out calibration images"}
MiB = 2**20


@dataclass
class PushResult:
    """What a push committed, and where."""

    repo_id: str
    repo_url: str
    commit: str  # the commit oid: pin downloads to it with --revision
    commit_url: str
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # expected files that were not there to push


# ---------------------------------------------------------------------------------------------
# Model card and config
# ---------------------------------------------------------------------------------------------


def _dense_counts(info: dict) -> tuple[int, int]:
    """(conv weights, fp32 bytes of weights + biases) of the unpruned trunk up to the same last layer."""
    weights = sum(DENSE_CONV_WEIGHTS[name] for name in info["widths"])
    biases = sum(DENSE_WIDTHS[name] for name in info["widths"])
    return weights, (weights + biases) * 4


def config_from_info(info: dict, filename: str) -> dict:
    """config.json: what a loader needs to know before downloading the checkpoint."""
    return {
        "format": info["format"],
        "format_version": info["format_version"],
        "checkpoint": filename,
        "arch": info.get("arch", "vgg19"),
        "last_layer": info["last_layer"],
        "pooling": info["pooling"],
        "widths": info["widths"],
        "preprocessing": info["preprocessing"],
        "weight_source": info.get("weight_source"),
        "encoding": info["encoding"],
        "dtype": info["dtype"],
        "pruning_method": info.get("pruning_method"),
        "sparsity": info.get("sparsity"),
        "provenance": info.get("provenance", {}),
        "metrics": info.get("metrics"),
    }


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
    return BASE_MODELS.get(parsed.name) if parsed.kind == "named" else None


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
            **JUDGE_DATASET,
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
    """A ``huggingface_hub.ModelCard`` from ``nst_core/hub_cards/model_card.md.j2`` for one checkpoint.

    ``info`` is ``read_checkpoint_info``'s dict; ``file_sizes`` maps every file pushed with it to its bytes.
    The metadata follows huggingface_hub's ``ModelCardData``: ``base_model`` (default: the Hub repo
    of the weights it was made from, see :func:`base_model_of`), ``pipeline_tag``
    image-feature-extraction, and the judged metrics as ``model-index``.

    >>> card = render_model_card(read_checkpoint_info(path), "me/x", path.name, {path.name: path.stat().st_size})  # doctest: +SKIP
    """
    if not TEMPLATE_PATH.is_file():
        raise HubError(f"model card template {TEMPLATE_PATH} is missing: the nst-core installation is incomplete")
    is_random = is_random_source(str(info.get("weight_source", "")))
    results = eval_results(info.get("metrics") or {}, is_random)
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=license,
        pipeline_tag=PIPELINE_TAG,
        tags=list(CARD_TAGS),
        base_model=base_model or base_model_of(info.get("weight_source")),
        model_name=repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
    )
    sparsity = info.get("sparsity", {})
    layers = []
    for name, weights in conv_weight_counts(info["widths"]).items():
        width = info["widths"][name]
        layers.append(
            {
                "name": name,
                "width": width,
                "dense_width": DENSE_WIDTHS[name],
                "weights": weights,
                "kept": round(weights * (1.0 - sparsity.get(name, 0.0))),
                "sparsity": sparsity.get(name, 0.0),
            }
        )
    weights_total = info.get("conv_weights", 0)
    weights_kept = info.get("conv_weights_kept", 0)
    dense_weights, dense_bytes = _dense_counts(info)
    prep = info["preprocessing"]
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        repo_id=repo_id,
        filename=filename,
        info=info,
        layers=layers,
        weights_total=weights_total,
        weights_kept=weights_kept,
        dense_weights=dense_weights,
        files=[{"name": n, "bytes": b, "mib": b / MiB} for n, b in file_sizes.items()],
        dense_fp32_mib=dense_bytes / MiB,
        checkpoint_mib=file_sizes[filename] / MiB,
        metrics=info.get("metrics") or {},
        provenance=info.get("provenance") or {},
        preprocessing=prep,
        is_random=is_random,
        structured=bool(info.get("structured")),
        has_plot=has_plot,
        plot_name=PLOT_NAME,
    )
    return card


def _stage_file(src: Path, dest: Path) -> None:
    # A hard link avoids copying a large checkpoint when both sit on one filesystem.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


# ---------------------------------------------------------------------------------------------
# Push and pull
# ---------------------------------------------------------------------------------------------


def write_repo_folder(
    folder: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    repo_id: str,
    *,
    filename: str | None = None,
    plot: str | os.PathLike | None = None,
    license: str = DEFAULT_LICENSE,
    base_model: str | None = None,
) -> list[str]:
    """Lay out a model repo in ``folder``: the checkpoint, config.json, README.md (the card) and the plot.

    The one layout ``nst push`` and ``VGGFeatures.save_pretrained`` / ``push_to_hub`` commit.
    The checkpoint is validated first (a corrupt or foreign file is never pushed). Returns the file names.
    """
    folder, checkpoint_path = Path(folder), Path(checkpoint_path)
    info = read_checkpoint_info(checkpoint_path)
    filename = filename or checkpoint_path.name
    if not filename.endswith(".safetensors") or "/" in filename:
        raise HubError(f"repo file name {filename!r} must be a plain name ending in .safetensors")
    if plot is not None and not Path(plot).is_file():
        raise HubError(f"plot {plot} does not exist")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise HubError(f"plot {plot} must be a PNG file")
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / filename).resolve() != checkpoint_path.resolve():
        _stage_file(checkpoint_path, folder / filename)
    _write_config(folder, info, filename)
    if plot is not None:
        shutil.copyfile(plot, folder / PLOT_NAME)
    card = _folder_card(
        folder, info, repo_id, filename, license=license, has_plot=plot is not None, base_model=base_model
    )
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    return sorted(p.name for p in folder.iterdir())


def _write_config(folder: Path, info: dict, filename: str) -> None:
    (folder / CONFIG_NAME).write_text(json.dumps(config_from_info(info, filename), indent=2) + "\n")


def _folder_card(folder: Path, info: dict, repo_id: str, filename: str, **options: Any) -> ModelCard:
    """The card of a repo folder's checkpoint, listing every file beside it (the card itself aside)."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != "README.md"}
    return render_model_card(info, repo_id, filename, sizes, **options)


def push_checkpoint(
    repo_id: str,
    checkpoint_path: str | os.PathLike,
    *,
    plot: str | os.PathLike | None = None,
    filename: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    license: str = DEFAULT_LICENSE,
    base_model: str | None = None,
    delete_patterns: list[str] | str | None = None,
) -> PushResult:
    """Create (or update) a model repo with a checkpoint, config.json, a model card and an optional plot.

    The checkpoint is validated first (a corrupt or foreign file is never pushed). ``revision``
    is a branch to commit to (default main). ``delete_patterns`` removes remote files that match
    (say, an older ``*.safetensors``) in the same commit. Returns the commit oid to pin downloads to.

    >>> push_checkpoint("me/vgg19-seed", "seed.safetensors", plot="scan.png").commit  # doctest: +SKIP
    'a1b2...'
    """
    check_repo_id(repo_id)
    if base_model is not None:
        check_repo_id(base_model)
    with tempfile.TemporaryDirectory(prefix="nst-push-") as tmp:
        files = write_repo_folder(
            tmp, checkpoint_path, repo_id, filename=filename, plot=plot, license=license, base_model=base_model
        )
        filename = filename or Path(checkpoint_path).name
        info = json.loads((Path(tmp) / CONFIG_NAME).read_text())
        api = HfApi()
        message = (
            commit_message
            or f"Upload {filename} ({info['encoding']}, {info['dtype']}, {info.get('pruning_method', 'none')})"
        )
        try:
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                # The Hub only commits to existing branches; start a new one from main.
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=message,
                revision=revision,
                delete_patterns=delete_patterns,
            )
        except Exception as exc:
            raise hub_error(exc, f"pushing to {repo_id}") from None
    return PushResult(repo_id, str(repo_url), commit.oid, commit.commit_url, files)


def pull(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    repo_type: str | None = None,
) -> Path:
    """Download one file through the Hugging Face cache, or into ``local_dir`` (like ``hf download REPO FILE``).

    From a model repo (the default ``repo_type``) the repo's config.json is always requested
    first (the Hub counts downloads by it); without
    ``filename`` the checkpoint it names is fetched. ``revision`` pins a branch, tag or commit
    oid. Offline (``HF_HUB_OFFLINE=1``) it reads the file from where it was downloaded to: the
    cache, or the same ``local_dir``.

    >>> pull("me/vgg19-seed", revision="a1b2...")  # doctest: +SKIP
    PosixPath('.../snapshots/a1b2.../seed.safetensors')
    """
    check_repo_id(repo_id)
    if repo_type not in (None, "model"):
        if filename is None:
            raise HubError(f"{repo_id}: give the file to download from this {repo_type}")
        return hub_download(repo_id, filename, revision, local_dir, repo_type)
    return hub_file(repo_id, filename, revision, local_dir)


def load_from_hub(repo_id: str, filename: str | None = None, revision: str | None = None) -> VGGFeatures:
    """A frozen network from a checkpoint on the Hub (see :func:`pull`)."""
    return load_checkpoint(pull(repo_id, filename, revision))


class NstHubFormat:
    """``VGGFeatures``' format for huggingface_hub's ``ModelHubMixin`` (registered with ``nst_core.model.vgg``).

    ``save_pretrained`` writes ``model.safetensors`` (an nst checkpoint, packed by default) and
    config.json; the card is rendered from them with :func:`render_model_card`.
    ``from_pretrained`` reads the checkpoint the config.json names (the mixin has fetched it).
    """

    def __init__(self, encoding: str = "packed", dtype: str = "fp16"):
        self.encoding = encoding
        self.dtype = dtype

    def save(self, model: VGGFeatures, save_directory: Path) -> None:
        """The checkpoint and config.json (``ModelHubMixin._save_pretrained``)."""
        try:
            path = save_checkpoint(model, save_directory / DEFAULT_HUB_FILE, encoding=self.encoding, dtype=self.dtype)
        except CheckpointError as exc:
            raise HubError(str(exc)) from None
        _write_config(save_directory, read_checkpoint_info(path), path.name)

    def card(self, model: VGGFeatures, save_directory: Path | None, repo_id: str | None, **kwargs: Any) -> ModelCard:
        """The card of what :meth:`save` wrote (``ModelHubMixin.generate_model_card``); kwargs: ``license``, ``base_model``."""
        if save_directory is None:
            raise HubError("VGGFeatures' model card describes a saved checkpoint: call save_pretrained or push_to_hub")
        config = json.loads((save_directory / CONFIG_NAME).read_text())
        filename = checkpoint_named(repo_id or "the saved folder", config) or DEFAULT_HUB_FILE
        info = read_checkpoint_info(save_directory / filename)
        return _folder_card(
            save_directory,
            info,
            repo_id or "OWNER/NAME",
            filename,
            license=kwargs.get("license", DEFAULT_LICENSE),
            base_model=kwargs.get("base_model"),
        )

    def load(
        self,
        model_id: str,
        config: dict | None,
        revision: str | None,
        *,
        device: str = "cpu",
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **config_fields: Any,
    ) -> VGGFeatures:
        """The network in a repo or folder (``ModelHubMixin._from_pretrained``); ``device`` places it.

        ``config_fields`` are config.json's entries the mixin passes on as ``__init__`` arguments;
        the checkpoint itself holds them, so they are not read twice.
        """
        folder = Path(model_id)
        if folder.is_dir():
            filename = checkpoint_named(model_id, config) or DEFAULT_HUB_FILE
            path = folder / filename
            if not path.is_file():
                raise HubError(
                    f"{folder}: no {filename} here (save_pretrained writes {DEFAULT_HUB_FILE} and {CONFIG_NAME})"
                )
        else:
            check_repo_id(model_id)
            filename = checkpoint_named(model_id, config) or DEFAULT_HUB_FILE
            path = hub_download(
                model_id,
                filename,
                revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        return load_checkpoint(path, device=device)


register_hub_format(NstHubFormat())


# ---------------------------------------------------------------------------------------------
# Weights hosting
# ---------------------------------------------------------------------------------------------


def convert_vgg_weights(
    source: str | os.PathLike, output: str | os.PathLike, preprocessing: str = "caffe", dtype: str = "fp32"
) -> Path:
    """A downloaded VGG-19 ``.pth`` (``features.N.*`` + ``classifier.*``) -> features-only safetensors.

    The output is a dense checkpoint: torchvision keys, so ``load_vgg("out.safetensors")`` and
    ``load_vgg("hf:REPO:out.safetensors")`` read it, with the preprocessing in its metadata.

    >>> convert_vgg_weights("vgg19-d01eb7cb.pth", "vgg19-caffe.safetensors")  # doctest: +SKIP
    """
    source, output = Path(source), Path(output)
    if preprocessing not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {preprocessing!r}; choose from {', '.join(PREPROCESSINGS)}")
    if source.suffix not in (".pth", ".pt"):
        raise WeightsError(f"{source}: expected a PyTorch .pth file to convert")
    state, _ = read_state_dict(source)
    model = VGGFeatures("relu5_4", preprocessing=PREPROCESSINGS[preprocessing])
    model.load_state_dict(match_state_dict(model, state, str(source)))
    model.weight_source = f"{preprocessing}:{source.name}"
    model.provenance = {"method": "none", "converted_from": source.name, "source_sha256": file_sha256(source)}
    try:
        return save_checkpoint(model, output, encoding="dense", dtype=dtype)
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# The Space
# ---------------------------------------------------------------------------------------------

_MINIMAL_SPACE_README = """---
title: Pruned VGG-19 style transfer
sdk: gradio
app_file: app.py
pinned: false
---

Neural style transfer with a dense and a pruned VGG-19. (This header was generated by
`nst push-space` because `space/README.md` was missing.)
"""


def project_root() -> Path:
    """The folder holding ``nst_core/`` (and, in a checkout, ``app.py`` and ``space/``)."""
    return Path(__file__).resolve().parents[2]


def assemble_space(root: str | os.PathLike, dest: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Copy what a Space needs into ``dest``: space/* at the top, app.py, nst_core/, hub_cards/,
    requirements.txt, and examples/ (the app's example images) when there is one.

    Returns (files copied, expected files that were missing). Caches are skipped.
    """
    root, dest = Path(root), Path(dest)
    if not (root / "nst_core").is_dir():
        raise HubError(f"{root}: no nst_core/ folder here; run from the project checkout or pass --root")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")
    missing = []
    if (root / "space").is_dir():
        shutil.copytree(root / "space", dest, ignore=ignore, dirs_exist_ok=True)
    if not (dest / "README.md").exists():
        missing.append("space/README.md")
        (dest / "README.md").write_text(_MINIMAL_SPACE_README)
    for name in ("app.py", "requirements.txt"):
        if (root / name).is_file():
            shutil.copyfile(root / name, dest / name)
        else:
            missing.append(name)
    shutil.copytree(root / "nst_core", dest / "nst_core", ignore=ignore, dirs_exist_ok=True)
    # The app offers the bundled example images; without them its Examples row would be empty.
    # hub_cards/ holds the model card template the app's "publish" path renders.
    for folder in ("examples", "hub_cards"):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, dest / folder, ignore=ignore, dirs_exist_ok=True)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    return files, missing


def push_space(
    repo_id: str, root: str | os.PathLike | None = None, private: bool | None = None, commit_message: str | None = None
) -> PushResult:
    """Upload the app as a Gradio Space (creating it if needed). Pushes what there is:
    before ``app.py`` exists the Space gets the library and README, and ``missing`` says so.

    >>> push_space("me/pruned-style-transfer").missing  # doctest: +SKIP
    []
    """
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="nst-space-") as tmp:
        files, missing = assemble_space(root or project_root(), tmp)
        api = HfApi()
        try:
            repo_url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, repo_type="space", folder_path=tmp, commit_message=commit_message or "Update the Space"
            )
        except Exception as exc:
            raise hub_error(exc, f"pushing the Space {repo_id}") from None
    return PushResult(repo_id, str(repo_url), commit.oid, commit.commit_url, files, missing)
