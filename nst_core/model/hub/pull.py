"""``nst pull``: one file of a Hub repo (by default the checkpoint its config.json names), and the network in it.

>>> model = load_from_hub("me/vgg19-seed-pruned", revision="a1b2...")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from nst_core.model.hub.download import hub_download, hub_file
from nst_core.model.hub.errors import HubError
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weight_spec import check_repo_id


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
