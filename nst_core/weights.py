"""Where VGG-19 weights come from, and loading them into a ``VGGFeatures``.

A weight spec is one string (its grammar is in ``nst_core.weight_spec``); this module turns
it into tensors. For plain weights on the Hub the file defaults to ``model.safetensors``.

Downloads go through torch hub's and huggingface_hub's caches with hash / revision checks.
With no network and nothing cached, loading fails within seconds with a message saying how
to provide weights, instead of hanging.
"""

from __future__ import annotations

import os
import pickle
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors import safe_open

from .checkpoint import is_checkpoint, load_checkpoint, parse_preprocessing
from .devices import resolve_device
from .errors import UserError, first_line
from .validation import cut
from .vgg import CAFFE, PREPROCESSINGS, TORCHVISION, Preprocessing, VGGFeatures, freeze, layer_index, random_state_dict
from .weight_spec import NAMED_SOURCES, WeightSpec, parse_weight_spec


class WeightsError(UserError):
    """Weights could not be found, downloaded or matched to the network."""


@dataclass(frozen=True)
class UrlWeights:
    """Weights downloaded from a fixed URL into torch hub's cache, with their preprocessing."""

    url: str
    filename: str  # torch hub checks the sha256 prefix embedded after the dash
    preprocessing: Preprocessing


URL_SOURCES = {
    "caffe": UrlWeights("https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth", "vgg19-d01eb7cb.pth", CAFFE),
    "torchvision": UrlWeights(
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "vgg19-dcbb9e9d.pth", TORCHVISION
    ),
}

assert set(URL_SOURCES) == set(NAMED_SOURCES)  # the grammar's names and the downloads agree
DEFAULT_HUB_FILE = "model.safetensors"

HOW_TO_GET_WEIGHTS = (
    "Provide weights one of these ways: run once with network access so they are cached; "
    "download {url} yourself and pass the file with --weights PATH; "
    "use --weights hf:REPO for a safetensors copy on the Hub; "
    "or use --weights random for a mechanical test (results are not meaningful)."
)

DOWNLOAD_TIMEOUT_S = float(os.environ.get("NST_DOWNLOAD_TIMEOUT", "10"))


def offline() -> bool:
    """Whether HF_HUB_OFFLINE or NST_OFFLINE asks for no network access."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "NST_OFFLINE"))


@contextmanager
def _socket_timeout(seconds: float):
    # torch.hub's urlopen has no timeout of its own; without this an unreachable host can hang.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download_url_weights(source: UrlWeights) -> Path:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / source.filename
    if cached.exists():
        return cached
    if offline():
        raise WeightsError(f"{source.filename} is not cached and offline mode is set. " + HOW_TO_GET_WEIGHTS.format(url=source.url))
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(source.url, str(cached), hash_prefix=source.filename.split("-")[1].split(".")[0], progress=True)
    except Exception as exc:  # network errors come in many classes (URLError, timeout, OSError, RuntimeError for hash)
        raise WeightsError(f"could not download {source.url}: {exc}. " + HOW_TO_GET_WEIGHTS.format(url=source.url)) from None
    return cached


def endpoint_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint (HF_ENDPOINT or huggingface.co) accepts a TCP connection."""
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_hf(parsed: WeightSpec) -> Path:
    spec, repo, revision = parsed.text, parsed.repo, parsed.revision
    filename = parsed.filename or DEFAULT_HUB_FILE
    # huggingface_hub retries an unreachable host for ~25 s; probing first keeps "offline" fast.
    local_only = offline() or not endpoint_reachable()
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, etag_timeout=DOWNLOAD_TIMEOUT_S, local_files_only=local_only))
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
        raise WeightsError(
            f"{spec}: not in the local Hugging Face cache and the Hub cannot be reached. "
            + HOW_TO_GET_WEIGHTS.format(url=f"the file {filename} from {repo}")
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise WeightsError(f"{spec}: {type(exc).__name__}: {first_line(exc)}") from None
    except Exception as exc:
        raise WeightsError(f"{spec}: could not download: {exc}") from None


def load_torch_file(path: str | os.PathLike, what: str, error: type[UserError] = UserError) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors: an empty, foreign or unsafe file is ``error``.

    A pickle that needs code or objects other than plain tensors is refused for safety; the
    message says so instead of PyTorch's advice to load it unsafely.

    >>> state = load_torch_file("vgg19.pth", "PyTorch weights file", WeightsError)  # doctest: +SKIP
    """
    path = Path(path)
    refused = f"{path}: not a loadable {what}"
    try:
        if path.stat().st_size == 0:
            raise error(f"{refused}: the file is empty (0 bytes)")
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise error(f"{refused}: refused for safety, because the file contains code or objects that are not plain tensors") from None
        raise error(f"{refused} ({cut(first_line(exc))})") from None
    except OSError as exc:
        raise error(f"{refused} ({exc.strerror or first_line(exc)})") from None
    except Exception as exc:  # torch.load raises many kinds (RuntimeError, KeyError, EOFError, ...) for foreign bytes
        raise error(f"{refused} ({type(exc).__name__}: {cut(first_line(exc))})") from None


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and (for safetensors) header metadata of a local weights file.

    A pickle is loaded with ``weights_only=True`` (plain tensors only; anything else is refused
    for safety); a ``preprocessing`` entry in the metadata is checked here, naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                keys = [k for k in f.keys() if k.startswith("features.")] or list(f.keys())
                state = {k: f.get_tensor(k) for k in keys}
        except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for every malformed file
            raise WeightsError(f"{path}: not a readable safetensors file ({cut(first_line(exc))})") from None
        if "preprocessing" in metadata:
            parse_preprocessing(metadata["preprocessing"], str(path), WeightsError)
        return state, metadata
    state = load_torch_file(path, "PyTorch weights file", WeightsError)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise WeightsError(f"{path}: expected a dict of tensors (a state_dict)")
    return state, {}


def features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep ``features.N.*`` keys; drop the classifier (and timm's pre_logits/head)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("features."):
            out[key] = value
    return out


def match_state_dict(model: VGGFeatures, state: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """The subset of ``state`` the model needs, checked key by key; names the first mismatch."""
    expected = model.state_dict()
    features = features_only(state)
    if not features:
        sample = ", ".join(list(state)[:4])
        raise WeightsError(f"{origin}: no 'features.N.weight' keys found (first keys: {sample}); is this a VGG-19 file?")
    for key, tensor in expected.items():
        if key not in features:
            raise WeightsError(f"{origin}: missing key {key!r} needed up to layer {model.last_layer}")
        if tuple(features[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{origin}: key {key!r} has shape {list(features[key].shape)}, expected {list(tensor.shape)}"
            )
    return {key: features[key].float() for key in expected}


def _preprocessing_from(metadata: dict[str, str], declared: str | None, default: Preprocessing) -> Preprocessing:
    if declared:
        return PREPROCESSINGS[declared]
    if "preprocessing" in metadata:
        return parse_preprocessing(metadata["preprocessing"], "the weights' metadata", WeightsError)
    return default


def resolve_weights(spec: str, preprocessing: str | None = None) -> tuple[dict[str, torch.Tensor], Preprocessing, str]:
    """Weight spec -> (state dict, preprocessing, human description). Random weights are not resolved here."""
    if preprocessing is not None and preprocessing not in PREPROCESSINGS:
        raise WeightsError(f"unknown preprocessing {preprocessing!r}; choose from {', '.join(PREPROCESSINGS)}")
    parsed = parse_weight_spec(spec)
    if parsed.kind == "named":
        source = URL_SOURCES[parsed.name]
        path = _download_url_weights(source)
        state, _ = read_state_dict(path)
        return state, PREPROCESSINGS[preprocessing] if preprocessing else source.preprocessing, spec
    if parsed.kind == "hub":
        path = _download_hf(parsed)
        state, metadata = read_state_dict(path)
        return state, _preprocessing_from(metadata, preprocessing, TORCHVISION), spec
    if parsed.kind != "file":
        raise WeightsError(f"{spec}: random weights are made by load_vgg, not resolved from a file")
    path = parsed.path
    if path.suffix == ".safetensors" and path.exists() and is_checkpoint(path):
        # A project checkpoint, possibly packed: decode it to plain weights.
        model = load_checkpoint(path)
        prep = PREPROCESSINGS[preprocessing] if preprocessing else model.preprocessing
        return model.state_dict(), prep, str(path)
    state, metadata = read_state_dict(path)
    # A .pth of unknown origin is most likely the seed's Caffe conversion.
    default = TORCHVISION if path.suffix == ".safetensors" else CAFFE
    return state, _preprocessing_from(metadata, preprocessing, default), str(path)


def load_vgg(
    spec: str = "caffe",
    last_layer: str = "relu5_4",
    pooling: str = "max",
    preprocessing: str | None = None,
    device: str | torch.device = "cpu",
) -> VGGFeatures:
    """A frozen, eval-mode VGG-19 trunk up to ``last_layer`` with weights from ``spec``.

    >>> model = load_vgg("random:0", last_layer="relu4_2")
    >>> sorted(model(torch.rand(1, 3, 64, 64) * 255, ["relu4_2"]))
    ['relu4_2']

    ``device``: cpu, cuda, cuda:N, mps, or auto (the fastest present; see ``nst_core.devices``).
    """
    layer_index(last_layer)  # validate early, before any download
    target = resolve_device(device)
    parsed = parse_weight_spec(spec)
    if parsed.kind == "random":
        seed = parsed.seed
        prep = PREPROCESSINGS[preprocessing or "caffe"]
        model = VGGFeatures(last_layer, pooling=pooling, preprocessing=prep)
        model.load_state_dict(random_state_dict(last_layer, seed))
        model.weight_source = f"random:{seed}"
    else:
        state, prep, description = resolve_weights(spec, preprocessing)
        model = VGGFeatures(last_layer, pooling=pooling, preprocessing=prep)
        model.load_state_dict(match_state_dict(model, state, description))
        model.weight_source = description
    return freeze(model.to(target))

