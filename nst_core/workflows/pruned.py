"""Which pruned network to compare with: a spec string, the same in the app, its flags and tests.

    profile:NAME        a named profile (``nst_core.compress.pruning.PROFILES``) pruned on the fly
    structured:RATIO    every conv loses RATIO of its filters (physically smaller, faster)
    fast:X              structured, each conv's width chosen for a predicted X-fold speedup
                        (``nst_core.compress.budget``, activation importance, proxy curves on the bundled examples)
    PATH.json           a profile file, e.g. selected from a sensitivity scan
    PATH.safetensors    a pruned checkpoint saved by ``nst prune --save`` / fine-tuning
    hf:OWNER/NAME[:FILE][@REV]   a pruned checkpoint on the Hugging Face Hub

>>> describe_pruned_spec("profile:seed")
'seed profile (fine-grained, pruned on the fly)'
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nst_core.compress.budget import budgeted_prune
from nst_core.compress.pruning import PROFILES, Profile, load_profile, prune
from nst_core.core.errors import UserError
from nst_core.model.layers import CONV_NAMES, layer_index
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weight_spec import HUB_PREFIX, parse_hub_spec
from nst_core.model.weights import locate_weights

#: Prefixes of the pruned-network specs pruned on the fly (the module docstring lists every form).
PROFILE_PREFIX = "profile:"
STRUCTURED_PREFIX = "structured:"
FAST_PREFIX = "fast:"
# The app's first comparison. Chosen at the app's CPU default (256 px, 20 s a picture) on the trained
# VGG-16 with two held-out photos (`python bench/bench_app.py --weights ... --pruned SPEC`): fast:2 ran
# 1.5x the dense iterations and judged 2.4x / 2.9x the dense output's style loss, against 4.1x / 3.2x for
# structured:0.25 and 6.0x / 4.4x for the seed profile (no faster per iteration). docs/benchmarks.md.
DEFAULT_PRUNED = FAST_PREFIX + "2"
STRUCTURED_DEMO = STRUCTURED_PREFIX + "0.5"
FAST_DEMO = FAST_PREFIX + "3"
#: The budgeted network's cost is predicted at this side (px), the size a real stylization runs at.
FAST_COST_SIZE = 512
# A Hub repo id from a request is echoed at most ECHO_LIMIT characters long (a pasted 100,000-character
# "repo id" must not come back). A Hub OWNER and NAME are at most 96 characters each; the rest leaves room
# for :FILE and @REVISION.
ECHO_LIMIT = 80
HUB_SPEC_LIMIT = 256


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
    was given one), the default budgeted network, named profiles, a structured example, a faster
    budgeted network, and files given on the command line with ``--pruned``."""
    specs = [DEFAULT_PRUNED] + [PROFILE_PREFIX + name for name in PROFILES] + [STRUCTURED_DEMO, FAST_DEMO]
    specs += list(server_files or [])
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
        return f"fast: ~{argument}x (budgeted widths, pruned on the fly)"
    if form == "hub":
        return f"Hub checkpoint {argument}"
    kind = "profile" if spec.endswith(".json") else "checkpoint"
    return f"{kind} file {Path(spec).name}"


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
    # Activation importance: on trained weights the best criterion at 3x (judged style 4.4x dense, l1 17x;
    # docs/real-weights-pruning.md).
    result = budgeted_prune(
        dense,
        target_speedup=target,
        importance="activation",
        size=FAST_COST_SIZE,
        calibration_size=48,
        levels=(0.5, 0.75, 0.875),
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
            f"{origin}: the network stops at {pruned.last_layer} but the comparison needs layers up to"
            f" {dense.last_layer}"
        )
    notes = []
    if pruned.preprocessing.name != dense.preprocessing.name:
        notes.append(
            f"{origin} expects {pruned.preprocessing.name} preprocessing, the dense network {dense.preprocessing.name}"
        )
    if pruned.weight_source != dense.weight_source and pruned.weight_source != "unset":
        notes.append(
            f"{origin} was pruned from weights '{pruned.weight_source}' but the dense network uses"
            f" '{dense.weight_source}': the comparison is between different networks"
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
