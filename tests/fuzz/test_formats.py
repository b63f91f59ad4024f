"""Every reader of an untrusted file either loads it or raises a UserError: never another exception.

Generated files go through the real loaders and through the `nst` entry point in-process (whose
exit code 1 would mean an unexpected exception). NST_FUZZ_PROFILE=deep runs many more examples;
NST_FUZZ_EXAMPLES=N sets the count of either profile.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st

from nst_core.cli import main
from nst_core.compress.finetune import load_state
from nst_core.compress.pruning import load_profile
from nst_core.compress.scan.folder import finished_records, load_scan_json
from nst_core.compress.scan.table import merge_scan
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import read_checkpoint_info
from nst_core.model.convert.keras_reader import read_keras_convs
from nst_core.model.convert.onnx_reader import read_onnx_convs
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weight_spec import parse_weight_spec
from nst_core.model.weights import load_vgg, read_state_dict

from support import formats


@pytest.fixture(scope="module", autouse=True)
def offline():
    """Weight specs must never reach the network from these tests; set for this module only, so the
    Hub tests that run later in the same session still talk to their stand-in."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NST_OFFLINE", "1")
        yield


def note(outcome: str) -> None:
    """Count an outcome in hypothesis's statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(outcome)


def loads_or_refuses(load, *args, **kwargs):
    """Call ``load``; a UserError is a fine answer, any other exception fails the example."""
    try:
        result = load(*args, **kwargs)
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), f"not a one-line message: {exc!r}"
        note(f"{load.__name__}: refused")
        return None
    note(f"{load.__name__}: loaded")
    return result


def cli_exit_code(argv: list[str], capsys) -> int:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), f"nst {' '.join(argv)} exited {code}: {err}"
    assert "Traceback" not in err
    note(f"nst {argv[0]}: exit {code}")
    return code


@pytest.mark.slow
@given(blob=formats.checkpoint_files())
def test_checkpoints(tmp_path, capsys, blob):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(blob)
    loaded = loads_or_refuses(load_checkpoint, path)
    info = loads_or_refuses(read_checkpoint_info, path)
    if loaded is not None:
        assert info is not None and info["widths"] == loaded.widths
    cli_exit_code(["checkpoint", "info", str(path)], capsys)
    loads_or_refuses(load_vgg, str(path), last_layer="relu1_2")  # --weights PATH reads a checkpoint too


@pytest.mark.slow
@given(blob=formats.recoded_checkpoints())
def test_recoded_quantised_checkpoints(tmp_path, blob):
    path = tmp_path / "recoded.safetensors"
    path.write_bytes(blob)
    loaded = loads_or_refuses(load_checkpoint, path)
    if loaded is not None:  # whatever loads is a whole network: masks of the convs' shapes, pruned weights zero
        for name, mask in loaded.masks.items():
            assert mask.shape == loaded.conv(name).weight.shape and torch.all(loaded.conv(name).weight[~mask] == 0)


@given(blob=formats.plain_weight_files())
def test_plain_weight_metadata(tmp_path, blob):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(blob)
    if loads_or_refuses(read_state_dict, path) is not None:
        loads_or_refuses(load_vgg, str(path), last_layer="relu1_1")


@given(blob=formats.onnx_files())
def test_onnx_weight_imports(tmp_path, blob):
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(blob)
    loads_or_refuses(read_onnx_convs, path)


@given(blob=formats.keras_files())
def test_keras_weight_imports(tmp_path, blob):
    path = tmp_path / "fuzz.h5"
    path.write_bytes(blob)
    loads_or_refuses(read_keras_convs, path)


@given(blob=formats.pickle_files())
def test_pickled_weights(tmp_path, blob):
    path = tmp_path / "fuzz.pth"
    path.write_bytes(blob)
    loads_or_refuses(read_state_dict, path)
    loads_or_refuses(load_vgg, str(path), last_layer="relu1_1")


@given(document=formats.profile_documents())
def test_profiles(tmp_path, capsys, document):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(document, allow_nan=True))
    loads_or_refuses(load_profile, path)
    cli_exit_code(["prune", "--weights", "random:0", "--last-layer", "relu1_2", "--profile", str(path)], capsys)


@pytest.mark.filterwarnings("ignore:.*skipping a")
@given(document=formats.scan_documents(), lines=formats.record_lines())
def test_scan_folders(tmp_path, capsys, document, lines):
    folder = tmp_path / "scan"
    (folder / "records").mkdir(parents=True, exist_ok=True)
    (folder / "scan.json").write_text(json.dumps(document, allow_nan=True))
    (folder / "records" / "shard-0-of-1.jsonl").write_text("\n".join(lines))
    (folder / "dense.json").write_text(json.dumps({"config_hash": "abc", "losses": document}, allow_nan=True))
    scan = loads_or_refuses(load_scan_json, folder)
    if scan is not None:
        finished_records(folder, scan["config_hash"])
        loads_or_refuses(merge_scan, folder)
    cli_exit_code(["scan", "merge", str(folder)], capsys)


@given(state=formats.finetune_states())
def test_finetune_states(tmp_path, state):
    import torch

    path = tmp_path / "state.pt"
    torch.save(state, path)
    loads_or_refuses(load_state, path)


@given(blob=st.binary(max_size=64))
def test_finetune_state_noise(tmp_path, blob):
    path = tmp_path / "state.pt"
    path.write_bytes(blob)
    loads_or_refuses(load_state, path)


@given(spec=formats.weight_specs)
def test_weight_specs(spec):
    loads_or_refuses(parse_weight_spec, spec)
    loads_or_refuses(load_vgg, spec, last_layer="relu1_1")


@pytest.mark.parametrize("spec", ["random:²", "random:" + "9" * 30, "random:abc"])
def test_weight_spec_seeds_found_by_fuzzing(spec, capsys):
    """Found by this suite: a Unicode digit and a seed above 2**64 crashed (ValueError, torch overflow)."""
    assert cli_exit_code(["prune", "--weights", spec, "--last-layer", "relu1_1", "--sparsity", "0.5"], capsys) == 2
