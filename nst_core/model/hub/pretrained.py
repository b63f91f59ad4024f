"""The files behind ``VGGFeatures``' huggingface_hub methods (``ModelHubMixin``), in the nst format.

``save_pretrained`` / ``push_to_hub`` write ``model.safetensors`` (an nst checkpoint, packed fp16),
config.json and the model card rendered from them: the layout ``nst push`` commits.
``from_pretrained`` reads the checkpoint config.json names, from a folder or through the cache.
The network (``nst_core.model.vgg``) calls these from its mixin hooks and builds itself from the
checkpoint; nothing here imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from nst_core.model.checkpoint import CheckpointError, SavableNetwork, read_checkpoint_info, save_checkpoint
from nst_core.model.hub.card import DEFAULT_LICENSE, folder_card
from nst_core.model.hub.config import CONFIG_NAME, DEFAULT_HUB_FILE, checkpoint_named, write_config
from nst_core.model.hub.download import hub_download
from nst_core.model.hub.errors import HubError
from nst_core.model.weight_spec import check_repo_id

#: How ``save_pretrained`` stores the network: the default of ``nst prune --save``.
PRETRAINED_ENCODING = "packed"
PRETRAINED_DTYPE = "fp16"


def save_pretrained_files(model: SavableNetwork, save_directory: Path) -> None:
    """The checkpoint and config.json (``ModelHubMixin._save_pretrained``); the card comes after them."""
    try:
        path = save_checkpoint(
            model, save_directory / DEFAULT_HUB_FILE, encoding=PRETRAINED_ENCODING, dtype=PRETRAINED_DTYPE
        )
    except CheckpointError as exc:
        raise HubError(str(exc)) from None
    write_config(save_directory, read_checkpoint_info(path), path.name)


def pretrained_card(save_directory: Path | None, repo_id: str | None, **kwargs: Any) -> ModelCard:
    """The card of what :func:`save_pretrained_files` wrote (``ModelHubMixin.generate_model_card``).

    kwargs: ``license``, ``base_model``; without ``repo_id`` the card says OWNER/NAME.
    """
    if save_directory is None:
        raise HubError("VGGFeatures' model card describes a saved checkpoint: call save_pretrained or push_to_hub")
    config = json.loads((save_directory / CONFIG_NAME).read_text())
    filename = checkpoint_named(repo_id or "the saved folder", config) or DEFAULT_HUB_FILE
    info = read_checkpoint_info(save_directory / filename)
    return folder_card(
        save_directory,
        info,
        repo_id or "OWNER/NAME",
        filename,
        license=kwargs.get("license", DEFAULT_LICENSE),
        base_model=kwargs.get("base_model"),
    )


def pretrained_checkpoint(
    model_id: str,
    config: dict | None,
    revision: str | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    **config_fields: Any,
) -> Path:
    """The checkpoint file of a repo or local folder (``ModelHubMixin._from_pretrained``; config.json read already).

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
        return path
    check_repo_id(model_id)
    filename = checkpoint_named(model_id, config) or DEFAULT_HUB_FILE
    return hub_download(
        model_id,
        filename,
        revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
