"""Moving checkpoints, weights and the Space through the Hugging Face Hub.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``,
``hf_hub_download``), so the token comes from the usual places (the ``HF_TOKEN`` variable or
``hf auth login``) and downloads use the normal cache (``HF_HUB_OFFLINE=1`` works once cached).
This module never reads, prints or writes the token.

>>> result = push_checkpoint("me/vgg19-seed-pruned", "seed.safetensors")   # doctest: +SKIP
>>> model = load_from_hub("me/vgg19-seed-pruned", revision=result.commit)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint
from .errors import UserError
from .files import file_sha256
from .vgg import DENSE_CONV_WEIGHTS, DENSE_WIDTHS, PREPROCESSINGS, VGGFeatures, conv_weight_counts
from .weight_spec import check_repo_id, is_random_source
from .weights import CONFIG_NAME, HubError, WeightsError, checkpoint_in_repo, hub_download, hub_error, match_state_dict, read_state_dict

PLOT_NAME = "sensitivity.png"
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "hub_cards" / "model_card.md.j2"
#: VGG-19's weights (Simonyan & Zisserman) are released under CC BY 4.0; pruned copies inherit it.
DEFAULT_LICENSE = "cc-by-4.0"
CARD_TAGS = ["neural-style-transfer", "style-transfer", "vgg19", "pruning", "safetensors", "nst-core"]
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


def render_model_card(
    info: dict, repo_id: str, filename: str, file_sizes: dict[str, int], license: str = DEFAULT_LICENSE, has_plot: bool = False
) -> ModelCard:
    """A ``huggingface_hub.ModelCard`` from ``hub_cards/model_card.md.j2`` for one checkpoint.

    ``info`` is ``read_checkpoint_info``'s dict; ``file_sizes`` maps every file pushed with it to its bytes.

    >>> card = render_model_card(read_checkpoint_info(path), "me/x", path.name, {path.name: path.stat().st_size})  # doctest: +SKIP
    """
    if not TEMPLATE_PATH.is_file():
        raise HubError(f"model card template {TEMPLATE_PATH} is missing; push from a checkout of the project")
    card_data = ModelCardData(
        library_name="pytorch",
        license=license,
        pipeline_tag="image-to-image",
        tags=list(CARD_TAGS),
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
        is_random=is_random_source(str(info.get("weight_source", ""))),
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
) -> PushResult:
    """Create (or update) a model repo with a checkpoint, config.json, a model card and an optional plot.

    The checkpoint is validated first (a corrupt or foreign file is never pushed). ``revision``
    is a branch to commit to (default main). Returns the commit oid to pin downloads to.

    >>> push_checkpoint("me/vgg19-seed", "seed.safetensors", plot="scan.png").commit  # doctest: +SKIP
    'a1b2...'
    """
    check_repo_id(repo_id)
    checkpoint_path = Path(checkpoint_path)
    info = read_checkpoint_info(checkpoint_path)
    filename = filename or checkpoint_path.name
    if not filename.endswith(".safetensors") or "/" in filename:
        raise HubError(f"repo file name {filename!r} must be a plain name ending in .safetensors")
    if plot is not None and not Path(plot).is_file():
        raise HubError(f"plot {plot} does not exist")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise HubError(f"plot {plot} must be a PNG file")

    with tempfile.TemporaryDirectory(prefix="nst-push-") as tmp:
        folder = Path(tmp)
        _stage_file(checkpoint_path, folder / filename)
        (folder / CONFIG_NAME).write_text(json.dumps(config_from_info(info, filename), indent=2) + "\n")
        if plot is not None:
            shutil.copyfile(plot, folder / PLOT_NAME)
        sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
        card = render_model_card(info, repo_id, filename, sizes, license=license, has_plot=plot is not None)
        (folder / "README.md").write_text(str(card), encoding="utf-8")
        files = sorted(p.name for p in folder.iterdir())

        api = HfApi()
        message = commit_message or f"Upload {filename} ({info['encoding']}, {info['dtype']}, {info.get('pruning_method', 'none')})"
        try:
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                # The Hub only commits to existing branches; start a new one from main.
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message, revision=revision)
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

    Without ``filename`` the checkpoint named in the repo's config.json is fetched.
    ``revision`` pins a branch, tag or commit oid. Offline (``HF_HUB_OFFLINE=1``) it reads the
    file from where it was downloaded to: the cache, or the same ``local_dir``.

    >>> pull("me/vgg19-seed", revision="a1b2...")  # doctest: +SKIP
    PosixPath('.../snapshots/a1b2.../seed.safetensors')
    """
    check_repo_id(repo_id)
    if filename is None:
        filename = checkpoint_in_repo(repo_id, revision, local_dir)
        if filename is None:
            where = repo_id + (f"@{revision}" if revision else "")
            raise HubError(f"{where}: {CONFIG_NAME} does not name an nst checkpoint; give the file name")
    return hub_download(repo_id, filename, revision, local_dir, repo_type)


def load_from_hub(repo_id: str, filename: str | None = None, revision: str | None = None) -> VGGFeatures:
    """A frozen network from a checkpoint on the Hub (see :func:`pull`)."""
    return load_checkpoint(pull(repo_id, filename, revision))


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
    return Path(__file__).resolve().parent.parent


def assemble_space(root: str | os.PathLike, dest: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Copy what a Space needs into ``dest``: space/* at the top, app.py, nst_core/, requirements.txt,
    and examples/ (the app's example images) when there is one.

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
    if (root / "examples").is_dir():
        shutil.copytree(root / "examples", dest / "examples", ignore=ignore, dirs_exist_ok=True)
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
