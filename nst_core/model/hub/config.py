"""config.json: what a loader needs to know before it downloads the checkpoint, and which file that is.

``nst push`` and ``save_pretrained`` write it beside the checkpoint; every load from the Hub
requests it first (the Hub counts a model's downloads by it) and reads the checkpoint it names.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import constants

from nst_core.model.checkpoint import FORMAT_NAME
from nst_core.model.hub.errors import HubError

#: The repo file read when nothing names another (plain weights, or a repo without an nst config.json);
#: ``save_pretrained`` writes its checkpoint under this name.
DEFAULT_HUB_FILE = "model.safetensors"
CONFIG_NAME = constants.CONFIG_NAME  # "config.json": in a repo `nst push` wrote, names the checkpoint file


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


def write_config(folder: Path, info: dict, filename: str) -> None:
    """Write config.json for the checkpoint ``filename`` (``info`` is its ``read_checkpoint_info``) into ``folder``."""
    (folder / CONFIG_NAME).write_text(json.dumps(config_from_info(info, filename), indent=2) + "\n")


def checkpoint_named(repo_id: str, config: dict | None) -> str | None:
    """The checkpoint file a config.json that ``nst push`` wrote names; None for any other config."""
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        return None
    name = config.get("checkpoint")
    if not isinstance(name, str) or "/" in name or "\\" in name or not name.endswith(".safetensors"):
        raise HubError(f"{repo_id}: {CONFIG_NAME} names a bad checkpoint file {str(name)[:80]!r}")
    return name
