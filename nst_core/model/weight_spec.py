"""The weight-spec grammar: one string names where a VGG's weights come from (VGG-19 or VGG-16).

The CLI (``--weights``), the app, the library and checkpoint metadata all carry this string,
and this module is the only place that reads it:

    caffe                   the Caffe VGG-19 converted to PyTorch (the seed's default)
    torchvision             torchvision's IMAGENET1K_V1 weights
    caffe-vgg16             the Caffe VGG-16 converted to PyTorch (as neural-style-pt uses)
    torchvision-vgg16       torchvision's IMAGENET1K_V1 VGG-16
    hf:OWNER/NAME[:FILE][@REV]
    hf://[models/]OWNER/NAME[@REV][/FILE]
                            a file in a Hugging Face Hub model repo, in the project's own syntax
                            or as huggingface_hub's ``hf://`` URI (read by its ``parse_hf_uri``);
                            FILE defaults to what the caller needs (plain weights:
                            ``model.safetensors``; a checkpoint: the one the repo's config.json
                            names), REV to the default branch
    PATH.pth | PATH.pt | PATH.safetensors
                            a local file
    random[:SEED]           seeded random weights: mechanically right, visually meaningless

>>> parse_weight_spec("hf:me/vgg19-seed:seed.safetensors@a1b2").revision
'a1b2'
>>> parse_weight_spec("hf://me/vgg19-seed@a1b2/seed.safetensors").filename
'seed.safetensors'
>>> parse_weight_spec("random:3").seed
3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import parse_hf_uri
from huggingface_hub.errors import HfUriError

from nst_core.core.errors import UserError
from nst_core.core.validation import cut

#: Weight sources known by name (their download URLs live in ``nst_core.model.weights``).
NAMED_SOURCES = ("caffe", "torchvision", "caffe-vgg16", "torchvision-vgg16")
HUB_PREFIX = "hf:"  # the project's own hf:OWNER/NAME[:FILE][@REV]; "hf://" URIs start with it too
HUB_URI_PREFIX = "hf://"  # huggingface_hub's URI scheme
RANDOM = "random"
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".safetensors")
HUB_GRAMMAR = "hf:OWNER/NAME[:FILE][@REVISION] or hf://OWNER/NAME[@REVISION][/FILE]"
GRAMMAR = (
    f"caffe, torchvision, caffe-vgg16, torchvision-vgg16, {HUB_GRAMMAR}, a .pth/.safetensors path, or random[:SEED]"
)


class WeightSpecError(UserError):
    """A weight spec that does not follow the grammar."""


@dataclass(frozen=True)
class WeightSpec:
    """A parsed weight spec. ``kind`` is one of "named", "hub", "file", "random"."""

    text: str
    kind: str
    name: str | None = None  # named: caffe | torchvision
    repo: str | None = None  # hub
    filename: str | None = None  # hub: None when the spec names no file
    revision: str | None = None  # hub
    path: Path | None = None  # file
    seed: int = 0  # random


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it has the Hub's OWNER/NAME shape, else a WeightSpecError."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise WeightSpecError(f"bad repo id {repo_id!r}: expected OWNER/NAME")
    return repo_id


def _parse_hub_uri(spec: str) -> WeightSpec:
    """'hf://[models/]OWNER/NAME[@REV][/FILE]' -> a hub WeightSpec, read by huggingface_hub's own parser."""
    try:
        uri = parse_hf_uri(spec)
    except HfUriError as exc:
        # huggingface_hub's message repeats parts of the URI: cut, as every echo of input is.
        raise WeightSpecError(
            f"bad Hub URI {cut(spec)!r}: {cut(exc.msg.strip(), 200)} Expected {HUB_GRAMMAR}"
        ) from None
    if uri.type != "model":
        raise WeightSpecError(f"bad Hub URI {cut(spec)!r}: weights come from a model repo, not a {uri.type}")
    return WeightSpec(spec, "hub", repo=uri.id, filename=uri.path_in_repo or None, revision=uri.revision)


def parse_hub_spec(spec: str) -> WeightSpec:
    """'hf:OWNER/NAME[:FILE][@REV]' or 'hf://OWNER/NAME[@REV][/FILE]' -> a hub WeightSpec.

    An empty FILE or REV is refused; an ``hf://`` URI follows huggingface_hub's grammar
    (``hf://models/OWNER/NAME`` too; dataset, Space and bucket URIs are refused).
    """
    if spec.startswith(HUB_URI_PREFIX):
        return _parse_hub_uri(spec)
    if not spec.startswith(HUB_PREFIX):
        raise WeightSpecError(f"bad Hub spec {spec!r}: expected {HUB_GRAMMAR}")
    body, at, revision = spec[len(HUB_PREFIX) :].partition("@")
    if at and not revision:
        raise WeightSpecError(f"bad Hub spec {spec!r}: empty revision after '@'")
    repo, colon, filename = body.partition(":")
    if colon and not filename:
        raise WeightSpecError(f"bad Hub spec {spec!r}: empty file name after ':'")
    try:
        check_repo_id(repo)
    except WeightSpecError:
        raise WeightSpecError(f"bad Hub spec {spec!r}: expected {HUB_GRAMMAR}") from None
    return WeightSpec(spec, "hub", repo=repo, filename=filename or None, revision=revision or None)


def parse_weight_spec(spec: str) -> WeightSpec:
    """Read a weight spec; a string that fits no form is a WeightSpecError listing the grammar.

    A path is checked for its suffix only: whether the file exists is the loader's question.
    """
    if spec in NAMED_SOURCES:
        return WeightSpec(spec, "named", name=spec)
    if spec.startswith(HUB_PREFIX):
        return parse_hub_spec(spec)
    if spec == RANDOM or spec.startswith(RANDOM + ":"):
        seed_text = spec[len(RANDOM) + 1 :] or "0"
        # ASCII digits only ("²".isdigit() is true), and a seed torch.Generator accepts (64 bits).
        if not (seed_text.isascii() and seed_text.isdigit()) or int(seed_text) >= 2**64:
            raise WeightSpecError(
                f"bad weight spec {spec[:80]!r}: the seed in random:SEED must be a non-negative integer below 2**64"
            )
        return WeightSpec(spec, "random", seed=int(seed_text))
    path = Path(spec)
    if path.suffix in WEIGHT_FILE_SUFFIXES:
        return WeightSpec(spec, "file", path=path)
    raise WeightSpecError(f"unknown weight source {spec!r}: use {GRAMMAR}")


def is_random_source(source: str) -> bool:
    """Whether a weight spec or a model's ``weight_source`` means seeded random weights."""
    return source == RANDOM or source.startswith(RANDOM + ":")
