"""Dense vs pruned, side by side: the orchestration behind the app (importable without Gradio).

One comparison runs the dense VGG-19 and a pruned one on the same inputs with the same
``StylizeConfig`` (so the same seed and the same init), then scores both outputs with the
dense judge (DESIGN.md: a pruned network is never judged by its own loss). The app only
turns the events of :func:`run_comparison` into widgets.

Which pruned network: a spec string, the same in the app, its flags and tests:

    profile:NAME        a named profile (``nst_core.compress.pruning.PROFILES``) pruned on the fly
    structured:RATIO    every conv loses RATIO of its filters (physically smaller, faster)
    fast:X              structured, each conv's width chosen for a predicted X-fold speedup
                        (``nst_core.compress.budget``, L1 filters, proxy curves on the bundled examples)
    PATH.json           a profile file, e.g. selected from a sensitivity scan
    PATH.safetensors    a pruned checkpoint saved by ``nst prune --save`` / fine-tuning
    hf:OWNER/NAME[:FILE][@REV]   a pruned checkpoint on the Hugging Face Hub

>>> s = default_settings(gpu=False)
>>> validate_settings(s)
>>> describe_pruned_spec("profile:seed")
'seed profile (fine-grained, pruned on the fly)'
"""

from __future__ import annotations

import copy
import functools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from nst_core.compress.budget import budgeted_prune
from nst_core.compress.pruning import PROFILES, Profile, load_profile, prune, sparsity_report
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.core.validation import cut
from nst_core.image.io import ImageSource, input_label, load_image
from nst_core.model.layers import CONV_NAMES, DENSE_WIDTHS, layer_index, min_input_side
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weight_spec import HUB_PREFIX, parse_hub_spec
from nst_core.model.weights import HOW_TO_GET_WEIGHTS, URL_SOURCES, WeightsError, load_vgg, locate_weights
from nst_core.nst.losses import get_preset
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import (
    OPTIMIZERS,
    Progress,
    StylizeConfig,
    StylizeResult,
    load_run_inputs,
    prepare,
    prepare_run,
    style_load_side,
    stylize,
)

PRESET = "seed"
#: The weights the app asks for first; when they cannot be loaded it falls back to RANDOM_WEIGHTS.
DEFAULT_WEIGHTS = "caffe"
RANDOM_WEIGHTS = "random:0"
#: Prefixes of the pruned-network specs pruned on the fly (the module docstring lists every form).
PROFILE_PREFIX = "profile:"
STRUCTURED_PREFIX = "structured:"
FAST_PREFIX = "fast:"
DEFAULT_PRUNED = PROFILE_PREFIX + "seed"
STRUCTURED_DEMO = STRUCTURED_PREFIX + "0.5"
FAST_DEMO = FAST_PREFIX + "3"
#: The budgeted network's cost is predicted at this side (px), the size a real stylization runs at.
FAST_COST_SIZE = 512

# Bounds every caller is held to (the app's sliders use the same numbers). The upper size
# bound keeps one request from taking a GPU Space for minutes; the lower one is what relu5_3 needs
# with a little room, so the judge's windows are not degenerate.
SIZE_RANGE = (64, 1024)
#: The largest size on a GPU by default (``app.py --max-size`` sets another); sizes that do not fit the
#: GPU's memory whole are stylized in tiles (``CompareSettings.max_memory``).
GPU_MAX_SIZE = 2048
ITERATIONS_RANGE = (1, 1000)
STYLE_STRENGTH_RANGE = (0.0, 20.0)
TV_WEIGHT_RANGE = (0.0, 1.0)
SEED_RANGE = (0, 2**31 - 1)
STYLE_SCALE_RANGE = (0.25, 4.0)
#: The app's colour choices beside "keep the content's colours" (luminance-only transfer, its own checkbox).
COLOR_CHOICES = ("none", "histogram")
MAX_STYLES = 4
# Error messages go back to whoever sent the request, so they repeat no value whole (a pasted
# 100,000-character "repo id" must not come back) and stay one readable line. A Hub OWNER and
# NAME are at most 96 characters each; the rest leaves room for :FILE and @REVISION.
ECHO_LIMIT = 80
MESSAGE_LIMIT = 500
HUB_SPEC_LIMIT = 256


@dataclass(frozen=True)
class CompareSettings:
    """What a person sets in the app; turned into one StylizeConfig shared by both runs."""

    size: int = 128
    iterations: int = 30
    optimizer: str = "adam"
    style_strength: float = 1.0  # multiplies the preset's style weight
    tv_weight: float = 1e-3
    seed: int = 0
    preserve_color: bool = False
    style_scale: float = 1.0  # style images' size relative to the output
    style_weights: tuple[float, ...] | None = None  # one per style image; None: equal
    color: str = "none"  # "histogram": the styles recoloured to the content's palette first
    mask: str | None = None  # greyscale content mask (white: stylized, black: kept)
    style_masks: tuple[str, ...] | None = None  # one greyscale mask per style image
    max_size: int = SIZE_RANGE[1]  # the server's largest size (not a person's setting)
    max_memory: int | None = None  # the server's memory budget per run, bytes (tiles above it)

    def to_config(self, preview_every: int = 0) -> StylizeConfig:
        """The one config both runs use (content init, the preset's weights scaled by ``style_strength``)."""
        preset = get_preset(PRESET)
        return StylizeConfig(
            preset=PRESET,
            size=int(self.size),
            iterations=int(self.iterations),
            optimizer=self.optimizer,
            init="content",
            seed=int(self.seed),
            style_weight=preset.style_weight * float(self.style_strength),
            tv_weight=float(self.tv_weight),
            preserve_color=bool(self.preserve_color),
            preview_every=preview_every,
            style_scale=float(self.style_scale),
            style_blend=None if self.style_weights is None else list(self.style_weights),
            color=self.color,
            mask=self.mask,
            style_masks=None if self.style_masks is None else list(self.style_masks),
            max_memory=self.max_memory,
        )


def default_settings(gpu: bool | None = None) -> CompareSettings:
    """Defaults that finish one click (dense + pruned) in about a minute on a 2-core CPU;
    full quality (512 px, the seed's Adam at more iterations) when a GPU is present.

    CPU numbers were measured on the 2-core build machine (see the README's app section):
    at 192 px one Adam iteration of the relu5_3-deep network takes about 0.4 s.
    """
    if gpu is None:
        gpu = resolve_device("auto").type != "cpu"
    if gpu:
        return CompareSettings(size=512, iterations=300)
    return CompareSettings(size=192, iterations=40)


def _check_range(name: str, value: float | None, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if value is None or not (low <= value <= high):
        raise UserError(f"{name} must be between {low} and {high}, not {value}")


def validate_settings(s: CompareSettings) -> None:
    """Raise a UserError naming the first setting that is out of range."""
    _check_range("size", s.size, (SIZE_RANGE[0], s.max_size))
    _check_range("iterations", s.iterations, ITERATIONS_RANGE)
    _check_range("style strength", s.style_strength, STYLE_STRENGTH_RANGE)
    _check_range("TV weight", s.tv_weight, TV_WEIGHT_RANGE)
    _check_range("seed", s.seed, SEED_RANGE)
    _check_range("style scale", s.style_scale, STYLE_SCALE_RANGE)
    if s.color not in COLOR_CHOICES:
        raise UserError(f"colour must be one of {', '.join(COLOR_CHOICES)}, not {s.color!r}")
    if s.style_weights is not None and (len(s.style_weights) > MAX_STYLES or not all(w >= 0 for w in s.style_weights)):
        raise UserError(f"style weights: at most {MAX_STYLES} non-negative numbers, one per style image")
    if s.optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {s.optimizer!r}")
    if int(s.size) != s.size or int(s.iterations) != s.iterations or int(s.seed) != s.seed:
        raise UserError("size, iterations and seed must be whole numbers")


# --- the dense network -------------------------------------------------------------------------


@dataclass
class DenseNetwork:
    """The app's dense VGG-19, and why it has random weights when it does."""

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


def warm_up(model: VGGFeatures) -> None:
    """Two tiny stylizations (one per optimizer), so the first person's timings do not include
    one-time start-up costs (lazy imports inside torch.optim, thread pools, allocator) that
    land on whichever run goes first, the dense one, and would flatter the pruned one."""
    img = Image.new("RGB", (64, 64), (120, 130, 140))
    for optimizer in OPTIMIZERS:
        stylize(prepare(model, img, [img], StylizeConfig(preset=PRESET, size=64, iterations=2, optimizer=optimizer)))


# --- the pruned network ------------------------------------------------------------------------


@dataclass
class PrunedNetwork:
    """A pruned network ready to compare, with where it came from and caveats to show."""

    model: VGGFeatures
    spec: str
    label: str
    file_bytes: int | None = None  # size of the checkpoint file it came from, if any
    notes: list[str] = field(default_factory=list)


def named_choices(server_files: list[str] | None = None, release: str | None = None) -> list[tuple[str, str]]:
    """(label, spec) pairs the app offers in its dropdown: a released checkpoint first (when the app
    was given one), named profiles, a structured example, the budgeted "fast" network, and files
    given on the command line with ``--pruned``."""
    specs = [PROFILE_PREFIX + name for name in PROFILES] + [STRUCTURED_DEMO, FAST_DEMO] + list(server_files or [])
    if release:
        specs = [release] + [spec for spec in specs if spec != release]
    return [(describe_pruned_spec(spec) + (" [release]" if spec == release else ""), spec) for spec in specs]


def default_pruned(release: str | None = None) -> str:
    """The dropdown's first choice: the released checkpoint when there is one, else :data:`DEFAULT_PRUNED`."""
    return release or DEFAULT_PRUNED


def _split_pruned_spec(spec: str) -> tuple[str, str]:
    """A pruned spec -> (form, argument): ("profile", NAME), ("structured", RATIO), ("hub", OWNER/NAME...)
    or ("file", PATH). Whether the argument is valid is for the caller to find out."""
    for form, prefix in (
        ("profile", PROFILE_PREFIX),
        ("structured", STRUCTURED_PREFIX),
        ("fast", FAST_PREFIX),
        ("hub", HUB_PREFIX),
    ):
        if spec.startswith(prefix):
            return form, spec.removeprefix(prefix)
    return "file", spec


def describe_pruned_spec(spec: str) -> str:
    """How the app names a pruned spec (in its dropdown, status line and table).

    >>> describe_pruned_spec("structured:0.5")
    'structured: 50% of filters removed (pruned on the fly)'
    """
    form, argument = _split_pruned_spec(spec)
    if form == "profile":
        return f"{argument} profile (fine-grained, pruned on the fly)"
    if form == "structured":
        try:
            return f"structured: {float(argument):.0%} of filters removed (pruned on the fly)"
        except ValueError:
            return spec
    if form == "fast":
        return f"fast: ~{argument}x (structured, widths chosen for the budget, pruned on the fly)"
    if form == "hub":
        return f"Hub checkpoint {argument}"
    kind = "profile" if spec.endswith(".json") else "checkpoint"
    return f"{kind} file {Path(spec).name}"


def public_message(message: str, uploads: Iterable[str | None] = ()) -> str:
    """An error message as the app shows it: each uploaded file named by its own file name,
    never by the server's temporary path, and the whole cut to ``MESSAGE_LIMIT`` characters.

    >>> public_message("/tmp/gradio/3f2a/evil.safetensors: not a safetensors file", ["/tmp/gradio/3f2a/evil.safetensors"])
    'evil.safetensors: not a safetensors file'
    """
    for path in uploads:
        if path:
            message = message.replace(str(path), Path(path).name)
    return cut(message, MESSAGE_LIMIT)


def pruned_spec_from_ui(choice: str | None, upload: str | None, hub_repo: str | None) -> str:
    """The app's three widgets (dropdown, file upload, repo id box) -> one pruned spec.

    An uploaded file or a repo id wins over the dropdown, so the person's latest, most
    specific action decides; empty widgets are ignored.
    """
    if upload:
        return str(upload)
    repo = (hub_repo or "").strip()
    if repo:
        if len(repo) > HUB_SPEC_LIMIT:  # checked first: every later message may repeat the id
            raise UserError(
                f"the Hub repo id {repo[:ECHO_LIMIT]!r}... is {len(repo):,} characters long; expected"
                f" OWNER/NAME[:FILE][@REVISION], at most {HUB_SPEC_LIMIT} characters"
            )
        spec = repo if repo.startswith(HUB_PREFIX) else HUB_PREFIX + repo
        if any(ch.isspace() for ch in spec):
            raise UserError(f"{repo!r} is not a Hub repo id: expected OWNER/NAME[:FILE][@REVISION]")
        parse_hub_spec(spec)  # a malformed id is the person's typo: say so before touching the network
        return spec
    if not choice:
        raise UserError("choose a pruned network to compare against")
    return choice


def _structured_profile(ratio_text: str) -> Profile:
    try:
        ratio = float(ratio_text)
    except ValueError:
        raise UserError(f"structured:RATIO needs a number, not {ratio_text!r}") from None
    return Profile("structured", {name: ratio for name in CONV_NAMES}, {"profile": STRUCTURED_PREFIX + ratio_text})


def _fast_network(target_text: str, dense: VGGFeatures, spec: str, label: str) -> PrunedNetwork:
    try:
        target = float(target_text)
    except ValueError:
        raise UserError(f"fast:X needs a speedup such as fast:3, not {spec!r}") from None
    if not 1.0 < target <= 8.0:
        raise UserError(f"fast:X needs a speedup above 1 and at most 8, not {target_text}")
    # Proxy curves at 48 px and three levels on the bundled examples: seconds on a CPU, done once per
    # dense network (cached); `nst prune --target-speedup` measures finer curves for a checkpoint.
    result = budgeted_prune(
        dense, target_speedup=target, size=FAST_COST_SIZE, calibration_size=48, levels=(0.5, 0.75, 0.875)
    )
    note = (
        f"widths chosen for a predicted {result.plan.predicted_speedup:.2f}x per iteration at "
        f"{FAST_COST_SIZE} px (conv MACs); not fine-tuned"
    )
    return PrunedNetwork(result.pruned, spec, label, notes=[note])


def _check_compatible(pruned: VGGFeatures, dense: VGGFeatures, origin: str) -> list[str]:
    """Refuse networks the comparison cannot use; return notes on ones it can but that need a caveat."""
    if layer_index(pruned.last_layer) < layer_index(dense.last_layer):
        raise UserError(
            f"{origin}: the network stops at {pruned.last_layer} but the comparison needs layers up to {dense.last_layer}"
        )
    notes = []
    if pruned.preprocessing.name != dense.preprocessing.name:
        notes.append(
            f"{origin} expects {pruned.preprocessing.name} preprocessing, the dense network {dense.preprocessing.name}"
        )
    if pruned.weight_source != dense.weight_source and pruned.weight_source != "unset":
        notes.append(
            f"{origin} was pruned from weights '{pruned.weight_source}' but the dense network uses '{dense.weight_source}':"
            " the comparison is between different networks"
        )
    return notes


def _file_checkpoint(path: Path, dense: VGGFeatures, spec: str, label: str) -> PrunedNetwork:
    model = load_checkpoint(path, device=next(dense.parameters()).device)
    return PrunedNetwork(model, spec, label, path.stat().st_size, _check_compatible(model, dense, label))


def _hub_checkpoint(spec: str, dense: VGGFeatures) -> PrunedNetwork:
    path = locate_weights(spec)  # the spec means the same file here as in `--weights`
    return _file_checkpoint(path, dense, spec, describe_pruned_spec(spec))


_PRUNED_CACHE: dict[tuple[str, str], PrunedNetwork] = {}
_PRUNED_CACHE_SIZE = 3
_pruned_lock = threading.Lock()


def resolve_pruned(spec: str, dense: VGGFeatures) -> PrunedNetwork:
    """A spec (see the module docstring) -> the pruned network, cached per (spec, dense weights).

    Profiles are pruned from ``dense`` itself, so both runs share every weight that survives.
    """
    spec = spec.strip()
    key = (spec, dense.weight_source)
    with _pruned_lock:
        if key in _PRUNED_CACHE:
            return _PRUNED_CACHE[key]
    label = describe_pruned_spec(spec) if spec else spec
    form, argument = _split_pruned_spec(spec)
    if form == "profile":
        net = PrunedNetwork(prune(dense, load_profile(argument)), spec, label)
    elif form == "structured":
        net = PrunedNetwork(prune(dense, _structured_profile(argument)), spec, label)
    elif form == "fast":
        net = _fast_network(argument, dense, spec, label)
    elif form == "hub":
        net = _hub_checkpoint(spec, dense)
    else:
        path = Path(spec)
        if path.suffix.lower() == ".json":
            net = PrunedNetwork(prune(dense, load_profile(path)), spec, label)
        elif path.suffix.lower() == ".safetensors":
            if not path.exists():
                raise UserError(f"checkpoint {path} does not exist")
            net = _file_checkpoint(path, dense, spec, label)
        else:
            raise UserError(
                f"unknown pruned network {spec!r}: use profile:NAME, structured:RATIO, a .json profile,"
                " a .safetensors checkpoint or hf:OWNER/NAME[:FILE][@REV]"
            )
    with _pruned_lock:
        if len(_PRUNED_CACHE) >= _PRUNED_CACHE_SIZE:
            _PRUNED_CACHE.pop(next(iter(_PRUNED_CACHE)))
        _PRUNED_CACHE[key] = net
    return net


def placed(dense: VGGFeatures, pruned: PrunedNetwork, device: torch.device) -> tuple[VGGFeatures, PrunedNetwork]:
    """Both networks on ``device``: themselves when they are there already, else copies moved there.

    The originals stay where start-up put them: on a ZeroGPU Space that is the CPU, because CUDA
    exists only while a ``spaces.GPU`` function runs, and the cached networks outlive each run.
    """
    here = next(dense.parameters()).device
    if here.type == device.type and (device.index is None or device.index == here.index):
        return dense, pruned
    return copy.deepcopy(dense).to(device), replace(pruned, model=copy.deepcopy(pruned.model).to(device))


# --- running both ------------------------------------------------------------------------------


@dataclass
class RunProgress:
    """One step of either run, for live status and previews."""

    phase: str  # "dense" | "pruned" | "judge"
    progress: Progress | None
    message: str


@dataclass
class Comparison:
    """Both runs' results, their timings and the dense judge's verdict: the end of a comparison."""

    dense: StylizeResult
    pruned: StylizeResult
    dense_seconds: float
    pruned_seconds: float
    judged: dict[str, float]  # content_ratio, style_ratio, ssim (pruned vs dense)
    dense_losses: dict[str, float]
    pruned_losses: dict[str, float]
    dense_network: VGGFeatures
    pruned_network: PrunedNetwork
    settings: CompareSettings

    @property
    def speedup(self) -> float:
        """Dense wall time over pruned wall time (NaN when the pruned run took no measurable time)."""
        return self.dense_seconds / self.pruned_seconds if self.pruned_seconds > 0 else float("nan")

    def summary_rows(self) -> list[list[str]]:
        """[metric, dense, pruned] rows for the results table."""
        d_rep, p_rep = sparsity_report(self.dense_network), sparsity_report(self.pruned_network.model)
        d_params = d_rep.total_weights + d_rep.total_biases
        p_params = p_rep.total_weights + p_rep.total_biases
        size = self.pruned_network.file_bytes
        j = self.judged
        it_d, it_p = len(self.dense.history), len(self.pruned.history)
        return [
            ["network", f"dense VGG-19 ({self.dense_network.weight_source})", self.pruned_network.label],
            ["time (s)", f"{self.dense_seconds:.2f}", f"{self.pruned_seconds:.2f}"],
            ["speedup vs dense", "1.00x", f"{self.speedup:.2f}x"],
            [
                "ms per iteration",
                f"{1000 * self.dense.timings.get('per_iteration', 0):.0f}",
                f"{1000 * self.pruned.timings.get('per_iteration', 0):.0f}",
            ],
            ["iterations run", f"{it_d} ({self.dense.stopped})", f"{it_p} ({self.pruned.stopped})"],
            ["parameters (conv weights + biases)", f"{d_params:,}", f"{p_params:,}"],
            ["nonzero parameters", f"{d_rep.total_kept_parameters:,}", f"{p_rep.total_kept_parameters:,}"],
            ["compression vs dense (conv weights)", "1.00x", f"{p_rep.compression:.2f}x"],
            ["checkpoint file size", "-", _mib(size) if size is not None else "- (pruned on the fly, no file)"],
            ["judge: SSIM vs dense output", "1.000", f"{j['ssim']:.3f}"],
            [
                "judge: content loss (dense network)",
                f"{self.dense_losses['content']:.4g}",
                f"{self.pruned_losses['content']:.4g}",
            ],
            [
                "judge: style loss (dense network)",
                f"{self.dense_losses['style']:.4g}",
                f"{self.pruned_losses['style']:.4g}",
            ],
            ["judge: content loss ratio vs dense", "1.000", f"{j['content_ratio']:.3f}"],
            ["judge: style loss ratio vs dense", "1.000", f"{j['style_ratio']:.3f}"],
        ]

    def sparsity_rows(self) -> list[list]:
        """[layer, channels, weights, nonzeros, sparsity vs dense] per conv of the pruned network."""
        rows = []
        for r in sparsity_report(self.pruned_network.model).rows:
            width = self.pruned_network.model.widths[r.name]
            channels = f"{width}" if width == DENSE_WIDTHS[r.name] else f"{width} / {DENSE_WIDTHS[r.name]}"
            rows.append([r.name, channels, r.weights, r.nonzeros, round(1.0 - r.nonzeros / r.dense_weights, 4)])
        return rows


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def load_inputs(
    content: ImageSource | None, styles: list[ImageSource | None] | None, size: int, style_side: int | None = None
) -> tuple[Image.Image, list[Image.Image]]:
    """Uploads -> RGB images at most ``size`` px (styles at most ``style_side``, when given), with errors that name the file."""
    if content is None:
        raise UserError("upload a content image")
    styles = [s for s in (styles or []) if s is not None]
    if not styles:
        raise UserError("upload at least one style image")
    if len(styles) > MAX_STYLES:
        raise UserError(f"at most {MAX_STYLES} style images, not {len(styles)}")
    need = min_input_side(get_preset(PRESET).last_layer)
    content_img = load_image(
        content, max_side=size, name=input_label("content image", content, full_path=False), min_side=need
    )
    style_imgs = [
        load_image(
            s, max_side=style_side or size, name=input_label(f"style image {i + 1}", s, full_path=False), min_side=need
        )
        for i, s in enumerate(styles)
    ]
    return content_img, style_imgs


class Cancelled(UserError):
    """The person pressed cancel."""


def run_comparison(
    dense: VGGFeatures,
    pruned: PrunedNetwork,
    content: ImageSource | None,
    styles: list[ImageSource | None] | None,
    settings: CompareSettings,
    cancel: threading.Event | None = None,
    previews: int = 8,
) -> Iterator[RunProgress | Comparison]:
    """Run dense then pruned with one config (same seed, same init), judge, and yield as it goes.

    Yields :class:`RunProgress` events (about ``previews`` of them per run carry a preview
    image) and finally one :class:`Comparison`. The work runs in a thread so events stream
    while it computes; closing the generator early (the app's cancel) sets ``cancel`` and the
    runs stop at their next iteration. Raises :class:`Cancelled` when cancelled, and the
    UserError of any bad input.
    """
    validate_settings(settings)
    config = settings.to_config(preview_every=max(1, int(settings.iterations) // max(1, previews)))
    content_img, style_imgs = load_inputs(
        content, styles, int(settings.size), style_load_side(config.size, config.style_scale)
    )
    inputs = load_run_inputs(content_img, style_imgs, config)  # validated once; both networks run on these
    cancel = cancel or threading.Event()
    events: queue.Queue = queue.Queue()
    done = object()

    def work() -> None:
        try:
            results = {}
            for phase, model in (("dense", dense), ("pruned", pruned.model)):

                def report(p: Progress, phase=phase) -> None:
                    events.put(
                        RunProgress(
                            phase, p, f"{phase}: iteration {p.iteration}/{p.total}, loss {p.losses.get('total', 0):.4g}"
                        )
                    )

                events.put(RunProgress(phase, None, f"{phase}: starting"))
                started = time.perf_counter()
                # Planned just before its run: a memory budget counts what the run before it left held.
                result = stylize(prepare_run(model, inputs), callback=report, cancel=cancel)
                results[phase] = (result, time.perf_counter() - started)
                if result.stopped == "cancelled":
                    raise Cancelled("cancelled")
            events.put(RunProgress("judge", None, "judging both outputs with the dense network"))
            judge = Judge(
                dense,
                PRESET,
                content_img,
                style_imgs,
                int(settings.size),
                blend=config.style_blend,
                preserve_color=settings.preserve_color,
            )
            (d_res, d_s), (p_res, p_s) = results["dense"], results["pruned"]
            judged = judge.compare(p_res.image, d_res.image)
            events.put(
                Comparison(
                    d_res,
                    p_res,
                    d_s,
                    p_s,
                    judged,
                    judge.losses(d_res.image),
                    judge.losses(p_res.image),
                    dense,
                    pruned,
                    settings,
                )
            )
        except BaseException as exc:  # handed to the consumer, who re-raises it in its own thread
            events.put(exc)
        finally:
            events.put(done)

    worker = threading.Thread(target=work, name="nst-compare", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Reached on normal end, on error, and when the consumer closes us (cancel): stop the work.
        cancel.set()
        worker.join(timeout=30)
