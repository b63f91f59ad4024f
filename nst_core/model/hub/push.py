"""``nst push``: a checkpoint, its config.json, its model card and a plot, committed to a model repo.

>>> result = push_checkpoint("me/vgg19-seed-pruned", "seed.safetensors")   # doctest: +SKIP
>>> result.commit  # doctest: +SKIP
'a1b2...'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi

from nst_core.model.checkpoint import read_checkpoint_info
from nst_core.model.hub.card import DEFAULT_LICENSE, PLOT_NAME, folder_card
from nst_core.model.hub.config import CONFIG_NAME, write_config
from nst_core.model.hub.errors import HubError, hub_error
from nst_core.model.weight_spec import check_repo_id


@dataclass
class PushResult:
    """What a push committed, and where."""

    repo_id: str
    repo_url: str
    commit: str  # the commit oid: pin downloads to it with --revision
    commit_url: str
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # expected files that were not there to push


def _stage_file(src: Path, dest: Path) -> None:
    # A hard link avoids copying a large checkpoint when both sit on one filesystem.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


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
    write_config(folder, info, filename)
    if plot is not None:
        shutil.copyfile(plot, folder / PLOT_NAME)
    card = folder_card(
        folder, info, repo_id, filename, license=license, has_plot=plot is not None, base_model=base_model
    )
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    return sorted(p.name for p in folder.iterdir())


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
