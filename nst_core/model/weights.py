"""Where VGG weights come from, and loading them into a ``VGGFeatures`` of the right architecture.

A weight spec is one string (its grammar is in ``nst_core.model.weight_spec``); this module turns
it into a network. A spec that names an nst checkpoint (a local ``.safetensors`` written by
``save_checkpoint``, or a Hub repo holding one) means that network, pruned widths and masks
included, wherever the spec is used. For a Hub repo named without a file, the file is the
checkpoint its ``config.json`` names, else ``model.safetensors``; config.json is requested on
every load from the Hub (``nst_core.model.hub.download.hub_file``), since the Hub counts a
model's downloads by it.

A plain weights file's architecture (VGG-19 or VGG-16) is its safetensors metadata's
``architecture`` when it has one, else what its conv keys say (16 or 13 convs at torchvision's
indices); ``arch`` (``--arch``) is needed only where neither tells, as for random weights.

Downloads go through torch hub's cache (the named sources' URLs, here) and huggingface_hub's
(``nst_core.model.hub.download``) with hash / revision checks.
With no network and nothing cached, loading fails within seconds with a message saying how
to provide weights, instead of hanging.
"""

from __future__ import annotations

import os
import pickle
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError, first_line
from nst_core.core.validation import cut
from nst_core.model.checkpoint import is_checkpoint, parse_preprocessing, read_checkpoint
from nst_core.model.hub.config import DEFAULT_HUB_FILE
from nst_core.model.hub.download import DOWNLOAD_TIMEOUT_S, hub_file
from nst_core.model.hub.errors import HubError, HubUnreachableError, offline
from nst_core.model.layers import (
    ARCHITECTURES,
    CAFFE,
    DEFAULT_ARCH,
    PREPROCESSINGS,
    TORCHVISION,
    Preprocessing,
    architectures_with_convs,
    get_architecture,
    layer_index,
)
from nst_core.model.vgg import VGGFeatures, freeze, network_from_checkpoint, random_state_dict
from nst_core.model.weight_spec import NAMED_SOURCES, WeightSpec, is_random_source, parse_weight_spec


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
    # VGG-16: the file's 13 convs say which architecture it is (file_architecture).
    "caffe-vgg16": UrlWeights(
        "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth", "vgg16-00b39a1b.pth", CAFFE
    ),
    "torchvision-vgg16": UrlWeights(
        "https://download.pytorch.org/models/vgg16-397923af.pth", "vgg16-397923af.pth", TORCHVISION
    ),
}

assert set(URL_SOURCES) == set(NAMED_SOURCES)  # the grammar's names and the downloads agree

HOW_TO_GET_WEIGHTS = (
    "Provide weights one of these ways: run once with network access so they are cached; "
    "download {url} yourself and pass the file with --weights PATH; "
    "use --weights hf:REPO for a safetensors copy on the Hub; "
    "or use --weights random for a mechanical test (results are not meaningful)."
)


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
        raise WeightsError(
            f"{source.filename} is not cached and offline mode is set. " + HOW_TO_GET_WEIGHTS.format(url=source.url)
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(
                source.url, str(cached), hash_prefix=source.filename.split("-")[1].split(".")[0], progress=True
            )
    except Exception as exc:  # network errors come in many classes (URLError, timeout, OSError, RuntimeError for hash)
        raise WeightsError(
            f"could not download {source.url}: {exc}. " + HOW_TO_GET_WEIGHTS.format(url=source.url)
        ) from None
    return cached


def _hub_weights_file(parsed: WeightSpec) -> Path:
    """The local file of a hub spec: FILE, else the repo's nst checkpoint, else ``model.safetensors``."""
    assert parsed.repo is not None  # a hub spec always names its repo
    try:
        return hub_file(parsed.repo, parsed.filename, parsed.revision, default=DEFAULT_HUB_FILE)
    except HubUnreachableError as exc:
        raise WeightsError(
            f"{parsed.text}: {exc}. " + HOW_TO_GET_WEIGHTS.format(url=f"the file from {parsed.repo}")
        ) from None
    except HubError as exc:
        raise WeightsError(f"{parsed.text}: {exc}") from None


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
            raise error(
                f"{refused}: refused for safety, because the file contains code or objects that are not plain tensors"
            ) from None
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
                if "preprocessing" in metadata:  # checked before any tensor is read
                    parse_preprocessing(metadata["preprocessing"], str(path), WeightsError)
                keys = [k for k in f.keys() if k.startswith("features.")] or list(f.keys())
                state = {k: f.get_tensor(k) for k in keys}
        except WeightsError:
            raise
        except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for every malformed file
            raise WeightsError(f"{path}: not a readable safetensors file ({cut(first_line(exc))})") from None
        return state, metadata
    state = load_torch_file(path, "PyTorch weights file", WeightsError)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
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
        raise WeightsError(
            f"{origin}: no 'features.N.weight' keys found (first keys: {sample}); "
            f"is this a {model.architecture.title} file?"
        )
    for key, tensor in expected.items():
        if key not in features:
            raise WeightsError(
                f"{origin}: missing key {key!r} needed up to layer {model.last_layer} of {model.architecture.title}"
            )
        if tuple(features[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{origin}: key {key!r} has shape {list(features[key].shape)}, "
                f"expected {list(tensor.shape)} for {model.architecture.title}"
            )
    return {key: features[key].float() for key in expected}


def _preprocessing_from(metadata: dict[str, str], declared: str | None, default: Preprocessing) -> Preprocessing:
    if declared:
        return PREPROCESSINGS[declared]
    if "preprocessing" in metadata:
        return parse_preprocessing(metadata["preprocessing"], "the weights' metadata", WeightsError)
    return default


def file_architecture(state: dict[str, torch.Tensor], metadata: dict[str, str], origin: str, arch: str | None) -> str:
    """The architecture of a plain weights file: its metadata's ``architecture``, else its conv keys, else ``arch``.

    ``arch`` (``--arch``) decides only what the file cannot: a file whose keys fit either architecture
    (its first convs only); VGG-19 then. A one-line WeightsError when ``arch`` contradicts the file.

    >>> file_architecture({}, {"architecture": "vgg16"}, "vgg16.safetensors", None)
    'vgg16'
    """
    declared = metadata.get("architecture")
    if declared is not None:
        if declared not in ARCHITECTURES:
            raise WeightsError(
                f"{origin}: metadata 'architecture' is {cut(declared, 40)!r}; nst reads {', '.join(ARCHITECTURES)}"
            )
        found = declared
    else:
        exact, fitting = architectures_with_convs(features_only(state))
        found = exact[0] if exact else fitting[0] if len(fitting) == 1 else ""
    if arch is not None and found and arch != found:
        title = get_architecture(found).title
        raise WeightsError(
            f"{origin}: the file holds {title} weights, not {get_architecture(arch).title} (--arch {arch})"
        )
    return arch or found or DEFAULT_ARCH


def locate_weights(spec: str) -> Path:
    """The local file a named, hub or file weight spec stands for, downloaded through the caches if need be.

    The one place a spec becomes a file: ``load_vgg`` and the app's pruned-network slot both use it.

    >>> locate_weights("hf:me/vgg19-seed-pruned@a1b2...")  # doctest: +SKIP
    PosixPath('.../snapshots/a1b2.../seed.safetensors')
    """
    parsed = parse_weight_spec(spec)
    if parsed.kind == "named" and parsed.name is not None:
        return _download_url_weights(URL_SOURCES[parsed.name])
    if parsed.kind == "hub":
        return _hub_weights_file(parsed)
    if parsed.kind == "file" and parsed.path is not None:
        return parsed.path
    raise WeightsError(f"{spec}: random weights are made by load_vgg, not read from a file")


def _plain_weights(
    parsed: WeightSpec, path: Path, preprocessing: str | None, arch: str | None
) -> tuple[dict[str, torch.Tensor], Preprocessing, str, str]:
    """A plain weights file -> (state dict, preprocessing, human description, architecture)."""
    state, metadata = read_state_dict(path)
    if parsed.kind == "named" and parsed.name is not None:
        default = URL_SOURCES[parsed.name].preprocessing
    elif parsed.kind == "file" and path.suffix != ".safetensors":
        default = CAFFE  # a .pth of unknown origin is most likely the seed's Caffe conversion
    else:
        default = TORCHVISION
    description = str(path) if parsed.kind == "file" else parsed.text
    return (
        state,
        _preprocessing_from(metadata, preprocessing, default),
        description,
        file_architecture(state, metadata, description, arch),
    )


def _last_layer_of(arch: str, last_layer: str | None, origin: str) -> str:
    """``last_layer`` checked against ``arch`` (default: its deepest ReLU); a one-line WeightsError naming both."""
    architecture = get_architecture(arch)
    if last_layer is None:
        return architecture.last_layer
    if not architecture.has(last_layer):
        raise WeightsError(
            f"{origin}: unknown {architecture.title} layer {last_layer!r} (a {architecture.title} ends at "
            f"{architecture.last_layer}); choose layers it has, or other weights"
        )
    return last_layer


def _checkpoint_network(
    path: Path, spec: str, last_layer: str | None, pooling: str, preprocessing: str | None, arch: str | None
) -> VGGFeatures:
    """The network an nst checkpoint holds (widths, masks, kept channels), cut after ``last_layer``,
    with the caller's pooling (a run setting, as for plain weights)."""
    stored = read_checkpoint(path)
    stored_arch = get_architecture(stored.arch)
    if arch is not None and arch != stored.arch:
        raise WeightsError(f"{spec}: the checkpoint holds a {stored_arch.title}, not a {get_architecture(arch).title}")
    last_layer = _last_layer_of(stored.arch, last_layer or stored.last_layer, spec)
    if stored_arch.layer_index(stored.last_layer) < stored_arch.layer_index(last_layer):
        raise WeightsError(
            f"{spec}: the checkpoint's network stops at {stored.last_layer}, but layers up to {last_layer} are needed"
        )
    prep = PREPROCESSINGS[preprocessing] if preprocessing else stored.preprocessing
    model = network_from_checkpoint(stored, last_layer, pooling, prep)
    # A pruned network records the dense weights it came from (the app shows the same); a dense file
    # is itself the weights, so its spec names them, unless they are random and must stay labelled so.
    pruned = bool(stored.masks or stored.kept_channels)
    model.weight_source = stored.weight_source if pruned or is_random_source(stored.weight_source) else spec
    return model


def load_vgg(
    spec: str = "caffe",
    last_layer: str | None = None,
    pooling: str = "max",
    preprocessing: str | None = None,
    device: str | torch.device = "cpu",
    arch: str | None = None,
) -> VGGFeatures:
    """A frozen, eval-mode VGG trunk up to ``last_layer`` with weights from ``spec``.

    >>> model = load_vgg("random:0", last_layer="relu4_2")
    >>> sorted(model(torch.rand(1, 3, 64, 64) * 255, ["relu4_2"])), model.arch
    (['relu4_2'], 'vgg19')
    >>> load_vgg("random:0", arch="vgg16").last_layer
    'relu5_3'

    The architecture is the file's (metadata, else its conv keys; see :func:`file_architecture`);
    ``arch`` (``vgg16`` or ``vgg19``) is for what cannot tell: random weights (VGG-19 unless given).
    ``last_layer`` defaults to the architecture's deepest ReLU. A spec naming an nst checkpoint
    (local or on the Hub) gives that network: its architecture, pruned widths and masks, cut after
    ``last_layer`` (an error when it stops before). ``device``: cpu, cuda, cuda:N, mps, or auto
    (the fastest present; see ``nst_core.core.devices``).
    """
    if arch is not None and arch not in ARCHITECTURES:
        raise WeightsError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if last_layer is not None:
        layer_index(last_layer)  # validate early, before any download (VGG-19 has every VGG-16 name)
    if preprocessing is not None and preprocessing not in PREPROCESSINGS:
        raise WeightsError(f"unknown preprocessing {preprocessing!r}; choose from {', '.join(PREPROCESSINGS)}")
    target = resolve_device(device)
    parsed = parse_weight_spec(spec)
    if parsed.kind == "random":
        prep = PREPROCESSINGS[preprocessing or "caffe"]
        arch = arch or DEFAULT_ARCH
        last_layer = _last_layer_of(arch, last_layer, spec)
        model = VGGFeatures(last_layer, pooling=pooling, preprocessing=prep, arch=arch)
        model.load_state_dict(random_state_dict(last_layer, parsed.seed, arch=arch))
        model.weight_source = f"random:{parsed.seed}"
    else:
        path = locate_weights(spec)
        if path.suffix == ".safetensors" and is_checkpoint(path):
            model = _checkpoint_network(path, spec, last_layer, pooling, preprocessing, arch)
        else:
            state, prep, description, found = _plain_weights(parsed, path, preprocessing, arch)
            last_layer = _last_layer_of(found, last_layer, description)
            model = VGGFeatures(last_layer, pooling=pooling, preprocessing=prep, arch=found)
            model.load_state_dict(match_state_dict(model, state, description))
            model.weight_source = description
    if model.has_random_weights:
        _warn_random_once(model.weight_source)
    return freeze(model.to(target))


class RandomWeightsWarning(UserWarning):
    """A network with seeded random weights was loaded: its results are mechanically right, visually meaningless."""


_random_warned = False


def _warn_random_once(source: str) -> None:
    # Once per process: a library user sees it, a loop that loads many networks is not flooded.
    # The CLI and the app say it their own way and filter this category out.
    global _random_warned
    if not _random_warned:
        _random_warned = True
        warnings.warn(
            f"VGG weights are random ({source}): results are mechanically right but visually meaningless; "
            "load real weights with load_vgg('caffe'), 'torchvision', 'hf:OWNER/NAME' or a file",
            RandomWeightsWarning,
            stacklevel=3,
        )
