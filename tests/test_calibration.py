"""Calibration images: bad files skipped, held-out images kept apart, crops a pure function of (seed, step)."""

from __future__ import annotations

import warnings

import pytest
import torch

from nst_core.compress.calibration import CropSampler, SkippedImageWarning, load_folder, split_heldout
from nst_core.core.errors import UserError

from support.pictures import write_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    write_images(folder, 5)
    return load_folder(folder, max_side=64)


def test_sampler_is_a_pure_function_of_seed_and_step(images):
    train_images, _ = split_heldout(images, count=2, seed=0)
    a = CropSampler(train_images, crop_size=32, batch_size=3, seed=1)
    b = CropSampler(train_images, crop_size=32, batch_size=3, seed=1)
    assert torch.equal(a.batch(5), b.batch(5))  # b never produced batches 0..4
    assert not torch.equal(a.batch(5), a.batch(6))
    assert a.batch(0).shape == (3, 3, 32, 32)
    assert not torch.equal(a.batch(0), CropSampler(train_images, crop_size=32, batch_size=3, seed=2).batch(0))


def test_heldout_images_are_never_trained_on(images):
    train_images, heldout = split_heldout(images, count=2, seed=0)
    assert len(heldout) == 2 and len(train_images) == 3
    assert not {im.name for im in heldout} & {im.name for im in train_images}
    assert sorted(im.name for im in train_images + heldout) == sorted(im.name for im in images)
    again, _ = split_heldout(images, count=2, seed=0)
    assert [im.name for im in again] == [im.name for im in train_images]  # the seed decides
    with pytest.raises(UserError, match="need at least 6"):
        split_heldout(images, count=5, seed=0)


def test_bad_image_in_folder_is_skipped(tmp_path):
    write_images(tmp_path, 3)
    (tmp_path / "notes.jpg").write_bytes(b"this is not a JPEG")
    (tmp_path / "cut.png").write_bytes((tmp_path / "img0.png").read_bytes()[:100])
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_folder(tmp_path)
    assert sorted(im.name for im in images) == ["img0.png", "img1.png", "img2.png"]
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedImageWarning)]
    assert any("notes.jpg" in m for m in messages) and any("cut.png" in m for m in messages)


def test_folder_with_no_usable_images_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    with pytest.warns(SkippedImageWarning), pytest.raises(UserError, match="could be read"):
        load_folder(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_folder(tmp_path / "missing")
