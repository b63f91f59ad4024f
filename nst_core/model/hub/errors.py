"""The Hub's failures as one-line errors, and whether the Hub may or can be reached.

huggingface_hub raises a class per failure (missing repo, file or revision, HTTP errors, offline
mode) and, for a connection that fails, whatever its transport raises; :func:`hub_error` turns
each into one ``HubError`` line naming what was asked for.

>>> raise hub_error(exc, "pushing to me/vgg19-seed") from None  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from nst_core.core.errors import UserError, first_line


class HubError(UserError):
    """A Hub repo, file or revision is missing, or the Hub refused or could not be reached."""


class HubUnreachableError(HubError):
    """The Hub cannot be reached (offline mode or no network) and the file is not on this machine."""


class HubFileMissingError(HubError):
    """The repo has no such file at that revision."""


def offline() -> bool:
    """Whether HF_HUB_OFFLINE or NST_OFFLINE asks for no network access."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "NST_OFFLINE"))


def endpoint_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint (HF_ENDPOINT or huggingface.co) accepts a TCP connection."""
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_error(exc: Exception, what: str, local_dir: str | os.PathLike | None = None) -> HubError:
    """huggingface_hub's errors (or a failed connection) as one line naming ``what`` was asked for.

    >>> raise hub_error(exc, "pushing to me/vgg19-seed") from None  # doctest: +SKIP
    """
    # LocalEntryNotFoundError subclasses EntryNotFoundError, so it is checked first.
    if isinstance(exc, LocalEntryNotFoundError):
        where = local_dir or "the local Hugging Face cache"
        return HubUnreachableError(
            f"{what}: not in {where}, and the Hub cannot be reached (offline mode or no network); "
            "download it once while online"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"{what}: repository not found (or it is private and you are not logged in: `hf auth login`)")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{what}: revision not found in the repository")
    if isinstance(exc, EntryNotFoundError):
        return HubFileMissingError(f"{what}: file not found in the repository at that revision")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        hint = " (check your token: `hf auth login` or HF_TOKEN)" if status in (401, 403) else ""
        return HubError(f"{what}: the Hub answered HTTP {status}{hint}: {first_line(exc)}")
    # Anything else without an HTTP answer is a failed connection when the endpoint does not answer now;
    # the transport's own exception classes change between huggingface_hub versions, a TCP probe does not.
    if isinstance(exc, OfflineModeIsEnabled) or not endpoint_reachable():
        cause = "offline mode is on (HF_HUB_OFFLINE is set)" if offline() else f"no answer from {constants.ENDPOINT}"
        return HubUnreachableError(
            f"{what}: the Hub cannot be reached: {cause}; check your network connection, HF_ENDPOINT and HF_HUB_OFFLINE"
        )
    return HubError(f"{what}: {type(exc).__name__}: {first_line(exc)}")
