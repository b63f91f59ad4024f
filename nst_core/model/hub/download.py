"""One file of a Hub repo through the Hugging Face cache (or into a folder), config.json requested first.

Offline (HF_HUB_OFFLINE or NST_OFFLINE), or when the Hub does not answer, files come from the
cache or the folder they were downloaded to, within seconds instead of after retries; every
failure is one ``HubError`` line.

>>> hub_file("me/vgg19-seed", revision="a1b2...")  # doctest: +SKIP
PosixPath('.../snapshots/a1b2.../seed.safetensors')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download

from nst_core.model.hub.config import CONFIG_NAME, checkpoint_named
from nst_core.model.hub.errors import (
    HubError,
    HubFileMissingError,
    HubUnreachableError,
    endpoint_reachable,
    hub_error,
    offline,
)

#: Seconds to wait for an answer before a download counts as failed (the Hub's and the weight URLs').
DOWNLOAD_TIMEOUT_S = float(os.environ.get("NST_DOWNLOAD_TIMEOUT", "10"))


def hub_download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    repo_type: str | None = None,
    *,
    local_files_only: bool = False,
    **download_options: Any,
) -> Path:
    """One file of a Hub repo, through the Hugging Face cache or into ``local_dir`` (as ``hf download`` does).

    Offline (HF_HUB_OFFLINE or NST_OFFLINE), or when the Hub does not answer, the file comes from
    the cache or from ``local_dir``, whichever the call names. Errors are one-line ``HubError``s.
    ``download_options`` go to ``hf_hub_download`` (``cache_dir``, ``force_download``, ``token``).

    >>> hub_download("me/vgg19-seed", "seed.safetensors", revision="a1b2...")  # doctest: +SKIP
    PosixPath('.../snapshots/a1b2.../seed.safetensors')
    """
    what = repo_id + (f"@{revision}" if revision else "") + f" file {filename}"
    # huggingface_hub retries an unreachable host for ~25 s; probing first keeps "offline" fast.
    local_only = local_files_only or offline() or not endpoint_reachable()
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                local_dir=Path(local_dir) if local_dir is not None else None,
                repo_type=repo_type,
                etag_timeout=DOWNLOAD_TIMEOUT_S,
                local_files_only=local_only,
                **download_options,
            )
        )
    except Exception as exc:
        raise hub_error(exc, what, local_dir) from None


def repo_config(repo_id: str, revision: str | None = None, local_dir: str | os.PathLike | None = None) -> dict | None:
    """A model repo's config.json as a dict; None when the repo has none (or it holds no JSON object).

    Every load from the Hub asks for it first: the Hub counts a model's downloads by the requests
    for its config.json, and for a repo ``nst push`` wrote it describes the checkpoint.
    """
    try:
        path = hub_download(repo_id, CONFIG_NAME, revision, local_dir)
    except HubFileMissingError:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def hub_file(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    default: str | None = None,
) -> Path:
    """One file of a model repo, config.json requested first (so the Hub counts the download).

    ``filename`` None means the checkpoint config.json names, else ``default``. Offline with
    config.json not cached, a named (or default) file is still read from where it was downloaded.

    >>> hub_file("me/vgg19-seed", revision="a1b2...")  # doctest: +SKIP
    PosixPath('.../snapshots/a1b2.../seed.safetensors')
    """
    try:
        config = repo_config(repo_id, revision, local_dir)
    except HubUnreachableError:
        if filename is None and default is None:
            raise
        config = None
    name = filename or checkpoint_named(repo_id, config) or default
    if name is None:
        where = repo_id + (f"@{revision}" if revision else "")
        raise HubError(f"{where}: {CONFIG_NAME} does not name an nst checkpoint; give the file name")
    return hub_download(repo_id, name, revision, local_dir)
