"""The app's dense VGG-19: loaded once per process, and why it has random weights when it does.

Weights that cannot be loaded (offline, nothing cached, a bad file) give seeded random weights and the
reason, instead of an app that does not start; every page showing their results carries
:meth:`DenseNetwork.banner`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from nst_core.core.devices import resolve_device
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weight_spec import HUB_PREFIX
from nst_core.model.weights import HOW_TO_GET_WEIGHTS, URL_SOURCES, WeightsError, load_vgg
from nst_core.nst.losses import get_preset
from nst_core.workflows.settings import PRESET

#: The weights the app asks for first; when they cannot be loaded it falls back to RANDOM_WEIGHTS.
DEFAULT_WEIGHTS = "caffe"
RANDOM_WEIGHTS = "random:0"


@dataclass
class DenseNetwork:
    """The app's dense VGG (VGG-19 or VGG-16, as its weights), and why it has random weights when it does."""

    model: VGGFeatures
    requested: str  # the weight spec asked for
    fallback_reason: str | None = None  # why random weights are used instead, if they are

    @property
    def device(self) -> torch.device:
        """Where the networks run (pruned ones are loaded beside the dense one)."""
        return next(self.model.parameters()).device

    @property
    def random(self) -> bool:
        """Whether the weights are seeded random ones (then every result must say so)."""
        return self.model.has_random_weights

    def banner(self) -> str | None:
        """The warning every screen showing results from random weights must carry (None for real weights)."""
        if not self.random:
            return None
        why = (
            f"The VGG-19 weights `{self.requested}` could not be loaded ({_without_how_to(self.fallback_reason)})."
            if self.fallback_reason
            else "The app was started with `--weights random`."
        )
        caffe = URL_SOURCES[DEFAULT_WEIGHTS]
        return (
            "**Random weights: results are not meaningful.** "
            + why
            + " The network has seeded random weights, so the pipeline runs end to end but the images"
            " and quality numbers say nothing about style transfer. To use real weights, start the app"
            " with network access once (they are cached), or download"
            f" `{caffe.url}` and run"
            f" `python app.py --weights /path/to/{caffe.filename}` (or `--weights {HUB_PREFIX}OWNER/REPO` for a"
            " safetensors copy on the Hub)."
        )


def _without_how_to(loader_message: str) -> str:
    """A weights loader's error without the how-to it may end with (the banner gives the app's own).

    The how-to is ``weights.HOW_TO_GET_WEIGHTS`` with a URL filled in; its text up to the URL
    placeholder marks where it starts.
    """
    how_to_opening = HOW_TO_GET_WEIGHTS.partition("{url}")[0]
    return loader_message.partition(how_to_opening)[0].rstrip(". ")


@functools.lru_cache(maxsize=2)
def _load_cached(spec: str, last_layer: str, dev: str) -> VGGFeatures:
    return load_vgg(spec, last_layer=last_layer, device=dev)


def load_dense(spec: str = DEFAULT_WEIGHTS, fallback: bool = True, device: str = "auto") -> DenseNetwork:
    """The dense network for the app, loaded once per process (cached by spec).

    With ``fallback`` a spec that cannot be loaded (offline, nothing cached, bad file) gives
    random weights and the reason, instead of an app that does not start.
    """
    last_layer = get_preset(PRESET).last_layer
    where = str(resolve_device(device))  # a missing GPU is the person's error, never a fallback
    try:
        return DenseNetwork(_load_cached(spec, last_layer, where), spec)
    except WeightsError as exc:
        if not fallback:
            raise
        return DenseNetwork(_load_cached(RANDOM_WEIGHTS, last_layer, where), spec, str(exc))
