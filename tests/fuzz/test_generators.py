"""The fuzz generators reach both branches: a good share of what they make loads, and some is refused.

The fuzz tests assert things about what loads (widths, masks, merged tables); a generator that only
ever made broken files would pass them all without running those assertions. Each generator here
draws a fixed, derandomized sequence of examples through the loader its fuzz test calls first.
Where the valid files form a large space, at least 10% must load (measured: checkpoints 15%,
recoded quantised checkpoints 33%, plain weights 30%, scan folders 17%). Where they are a handful of
distinct values (hypothesis makes each distinct example once), at least one must.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nst_core.compress.finetune import load_state
from nst_core.compress.pruning import load_profile
from nst_core.compress.scan.folder import load_scan_json
from nst_core.core.errors import UserError
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weight_spec import parse_weight_spec
from nst_core.model.weights import read_state_dict

from support import formats

EXAMPLES = 60


def write_bytes(name: str):
    def write(folder: Path, blob: bytes) -> Path:
        (folder / name).write_bytes(blob)
        return folder / name

    return write


def write_json(folder: Path, document) -> Path:
    (folder / "profile.json").write_text(json.dumps(document, allow_nan=True))
    return folder / "profile.json"


def write_state(folder: Path, state) -> Path:
    torch.save(state, folder / "state.pt")
    return folder / "state.pt"


def write_scan_folder(folder: Path, document_and_lines) -> Path:
    document, lines = document_and_lines
    (folder / "scan" / "records").mkdir(parents=True, exist_ok=True)
    (folder / "scan" / "scan.json").write_text(json.dumps(document, allow_nan=True))
    (folder / "scan" / "records" / "shard-0-of-1.jsonl").write_text("\n".join(lines))
    return folder / "scan"


# (name, strategy, how an example becomes the loader's argument, the loader, least share that loads)
CASES = [
    ("checkpoints", formats.checkpoint_files(), write_bytes("c.safetensors"), load_checkpoint, 0.10),
    ("recoded", formats.recoded_checkpoints(), write_bytes("r.safetensors"), load_checkpoint, 0.10),
    ("plain weights", formats.plain_weight_files(), write_bytes("p.safetensors"), read_state_dict, 0.10),
    (
        "scan folders",
        st.tuples(formats.scan_documents(), formats.record_lines()),
        write_scan_folder,
        load_scan_json,
        0.10,
    ),
    ("pickles", formats.pickle_files(), write_bytes("p.pth"), read_state_dict, 0),
    ("profiles", formats.profile_documents(), write_json, load_profile, 0),
    ("fine-tune states", formats.finetune_states(), write_state, load_state, 0),
    ("weight specs", formats.weight_specs, lambda folder, spec: spec, parse_weight_spec, 0),
]


@pytest.mark.filterwarnings("ignore:.*skipping a")
@pytest.mark.parametrize("name, strategy, prepare, load, least", CASES, ids=[case[0] for case in CASES])
def test_generated_files_load_and_are_refused(tmp_path, monkeypatch, name, strategy, prepare, load, least):
    monkeypatch.setenv("NST_OFFLINE", "1")
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(example=strategy)
    def draw(example):
        try:
            load(prepare(tmp_path, example))
            outcomes["loaded"] += 1
        except UserError:
            outcomes["refused"] += 1

    draw()
    total = sum(outcomes.values())
    assert outcomes["loaded"] >= max(1, least * total), f"{name}: {dict(outcomes)}"
    assert outcomes["refused"] >= 1, f"{name}: {dict(outcomes)}"
