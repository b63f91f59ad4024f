"""Tests for nst_core.image.io: every input kind, colour mode and failure, with files made here."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core.core.errors import UserError
from nst_core.image.io import ImageError, load_image, pil_to_tensor, resize_max_side, resize_to, tensor_to_pil

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _rgb_array(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds no pixel data (a 'bomb' stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


# --- formats and colour modes ------------------------------------------------------------------


def test_png_rgb_from_path_is_exact(tmp_path):
    arr = _rgb_array()
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    for src in (path, str(path)):
        img = load_image(src)
        assert img.mode == "RGB" and img.size == (32, 24)
        np.testing.assert_array_equal(np.asarray(img), arr)


def test_jpeg_rgb_loads_close_to_original(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (200, 40, 30)
    arr[:, 30:] = (20, 90, 220)
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg_bytes(Image.fromarray(arr)))
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (60, 40)
    assert np.abs(_pixels(img)[5:-5, 5:25] - (200, 40, 30)).max() < 12
    assert np.abs(_pixels(img)[5:-5, 35:-5] - (20, 90, 220)).max() < 12


def test_grayscale_becomes_equal_rgb_channels(tmp_path):
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (10, 1))
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    img = load_image(path)
    assert img.mode == "RGB"
    for c in range(3):
        np.testing.assert_array_equal(np.asarray(img)[:, :, c], gray)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 1, 257 * 100, 32896, 257 * 200, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    src = Image.fromarray(values)
    assert src.mode.startswith("I;16")
    src.save(path)
    assert Image.open(path).mode in ("I;16", "I")  # PIL really reads it back as 16-bit
    img = load_image(path)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img)[0, :, 0], [0, 1, 100, 128, 200, 255])
    np.testing.assert_array_equal(np.asarray(img)[0, :, 1], np.asarray(img)[0, :, 2])


def test_palette_with_transparency_turns_transparent_index_white(tmp_path):
    pal = Image.new("P", (8, 4))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    data = np.zeros((4, 8), np.uint8)
    data[:, 4:] = 1  # red
    data[0, :] = 2  # blue top row
    pal.putdata(data.flatten().tolist())
    path = tmp_path / "palette.png"
    pal.save(path, transparency=0)  # index 0 (black) is transparent
    img = load_image(path)
    px = np.asarray(img)
    assert img.mode == "RGB"
    assert tuple(px[2, 0]) == (255, 255, 255)  # was transparent black
    assert tuple(px[2, 6]) == (255, 0, 0)
    assert tuple(px[0, 0]) == (0, 0, 255)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[1, 1] = (255, 0, 0, 255)  # opaque red stays red
    rgba[2, 2] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    px = _pixels(load_image(path))
    assert tuple(px[0, 0]) == (255, 255, 255)
    assert tuple(px[1, 1]) == (255, 0, 0)
    assert np.all(np.abs(px[2, 2] - 127) <= 1)


def test_la_is_composited_on_white(tmp_path):
    la = Image.new("LA", (3, 3), (0, 0))
    la.putpixel((1, 1), (50, 255))
    path = tmp_path / "la.png"
    la.save(path)
    px = np.asarray(load_image(path))
    assert tuple(px[0, 0]) == (255, 255, 255)
    assert tuple(px[1, 1]) == (50, 50, 50)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "print.jpg"
    cmyk.save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    img = load_image(path)
    r, g, b = _pixels(img)[16, 16]
    assert img.mode == "RGB" and r > 230 and g < 30 and b < 30


def test_exif_orientation_is_applied(tmp_path):
    arr = np.full((20, 40, 3), 255, np.uint8)
    arr[:, :4] = (255, 0, 0)  # red stripe on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, "JPEG", quality=95, exif=exif.tobytes())
    img = load_image(path)
    assert img.size == (20, 40)  # width and height swapped
    px = _pixels(img)
    assert np.all(np.abs(px[1, 5] - (255, 0, 0)) < 40)  # left edge is now the top edge
    assert np.all(np.abs(px[-2, 5] - (255, 255, 255)) < 40)


def test_exif_orientation_with_max_side_keeps_swapped_aspect(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone_big.jpg"
    Image.fromarray(_rgb_array(300, 400)).save(path, "JPEG", exif=exif.tobytes())
    assert load_image(path, max_side=100).size == (75, 100)


# --- input kinds -------------------------------------------------------------------------------


def test_bytes_and_file_objects():
    arr = _rgb_array()
    data = _png_bytes(Image.fromarray(arr))
    for src in (data, bytearray(data), io.BytesIO(data)):
        np.testing.assert_array_equal(np.asarray(load_image(src)), arr)


def test_pil_input_is_not_modified():
    rgba = Image.new("RGBA", (10, 6), (10, 20, 30, 0))
    img = load_image(rgba, max_side=5)
    assert rgba.mode == "RGBA" and rgba.size == (10, 6)
    assert img.mode == "RGB" and img.size == (5, 3)
    rgb = Image.fromarray(_rgb_array())
    out = load_image(rgb)
    assert out is not rgb
    np.testing.assert_array_equal(np.asarray(out), np.asarray(rgb))


def test_numpy_inputs():
    arr = _rgb_array()
    np.testing.assert_array_equal(np.asarray(load_image(arr)), arr)

    gray = arr[:, :, 0]
    for g in (gray, gray[:, :, None]):
        px = np.asarray(load_image(g))
        assert px.shape == (24, 32, 3)
        np.testing.assert_array_equal(px[:, :, 2], gray)

    deep = np.array([[0, 257 * 7, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(np.asarray(load_image(deep))[0, :, 0], [0, 7, 255])

    floats = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(load_image(floats))[0, 0], [0, 128, 255])

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[1, 1] = (0, 255, 0, 255)
    px = np.asarray(load_image(rgba))
    assert tuple(px[0, 0]) == (255, 255, 255) and tuple(px[1, 1]) == (0, 255, 0)


@pytest.mark.parametrize(
    "arr, problem",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((4, 4, 3), 255.0), "0..1"),
        (np.full((4, 4, 3), np.nan), "NaN"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
    ],
)
def test_bad_numpy_inputs(arr, problem):
    with pytest.raises(ImageError, match=problem) as info:
        load_image(arr, name="webcam frame")
    assert "webcam frame" in str(info.value)


# --- errors ------------------------------------------------------------------------------------


def test_image_error_is_a_user_error():
    assert issubclass(ImageError, UserError)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "not an image" in str(info.value)


def test_default_label_and_name_override():
    with pytest.raises(ImageError, match=r"^uploaded image: not an image"):
        load_image(b"plain text")
    with pytest.raises(ImageError, match=r"^cat\.png: not an image"):
        load_image(b"plain text", name="cat.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_files(tmp_path, fmt, keep):
    buf = io.BytesIO()
    Image.fromarray(_rgb_array(64, 64)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and "truncated or corrupt" in message and fmt in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "empty" in str(info.value)
    with pytest.raises(ImageError, match="uploaded image: file is empty"):
        load_image(b"")


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError) as info:
        load_image(missing)
    assert str(missing) in str(info.value) and "not found" in str(info.value)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value) and "directory" in str(info.value)


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="unsupported image source of type int"):
        load_image(42)


def test_pixel_limit(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(_rgb_array(50, 100)).save(path)
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=4999)
    message = str(info.value)
    assert str(path) in message and "too large" in message and "100x50" in message and "4,999" in message
    assert load_image(path, max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageError, match="too large"):
        load_image(_rgb_array(50, 100), max_pixels=4999)
    with pytest.raises(ImageError, match="too large"):
        load_image(Image.new("RGB", (100, 50)), max_pixels=4999)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    """The header claims 2000x2000 but there is no pixel data: refusing it as 'too large' rather
    than 'corrupt' shows the size was checked before any decoding was attempted."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(2000, 2000))
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=1_000_000)
    assert str(path) in str(info.value) and "too large" in str(info.value) and "2000x2000" in str(info.value)


def test_pil_decompression_bomb_warning_is_an_error(tmp_path):
    """Above PIL's own limit (but under ours) PIL only warns; we refuse instead of decoding."""
    pixels = Image.MAX_IMAGE_PIXELS + 1_000_000
    side = int(pixels**0.5) + 1
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=10 * pixels)
    assert str(path) in str(info.value) and "too large to decode safely" in str(info.value)


def test_too_small(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(_rgb_array(10, 40)).save(path)
    with pytest.raises(ImageError) as info:
        load_image(path, min_side=16)
    message = str(info.value)
    assert str(path) in message and "too small" in message and "16 px" in message and "40x10" in message
    assert load_image(path, min_side=10).size == (40, 10)
    with pytest.raises(ImageError, match=r"too small \(20x5 px after resizing\).*at least 8 px"):
        load_image(path, max_side=20, min_side=8)


# --- resizing ----------------------------------------------------------------------------------


def test_resize_keeps_aspect_and_never_upscales(tmp_path):
    img = Image.fromarray(_rgb_array(200, 400))
    assert resize_max_side(img, 100).size == (100, 50)
    assert resize_max_side(img, 1000) is img
    tall = Image.fromarray(_rgb_array(300, 120))
    assert resize_max_side(tall, 100).size == (40, 100)
    assert load_image(_rgb_array(30, 50), max_side=512).size == (50, 30)
    assert resize_to(img, (17, 9)).size == (17, 9)
    with pytest.raises(ValueError):
        resize_max_side(img, 0)


def test_jpeg_fast_decode_gives_the_same_size_as_a_full_decode(tmp_path):
    arr = np.zeros((1001, 1333, 3), np.uint8)
    arr[:, :, 0] = np.linspace(0, 255, 1333)[None, :].astype(np.uint8)
    arr[:, :, 2] = np.linspace(0, 255, 1001)[:, None].astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(arr).save(path, quality=90)
    fast = load_image(path, max_side=300)
    full = load_image(Image.open(path), max_side=300)  # PIL input: decoded at full size
    assert fast.size == full.size == (300, 225)
    assert np.abs(_pixels(fast) - _pixels(full)).mean() < 2.0  # smooth image: nearly identical


# --- tensors -----------------------------------------------------------------------------------


def test_tensor_round_trip_is_exact_for_uint8():
    arr = _rgb_array(17, 23, seed=3)
    img = load_image(arr)
    t = pil_to_tensor(img)
    assert t.shape == (1, 3, 17, 23) and t.dtype == torch.float32
    assert float(t.min()) >= 0 and float(t.max()) <= 255
    assert torch.equal(t[0, 0], torch.from_numpy(arr[:, :, 0].astype(np.float32)))
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(t)), arr)
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(t[0])), arr)


def test_tensor_to_pil_clamps_and_rounds():
    t = torch.tensor([-5.0, 300.0, 127.6, 127.4]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    img = tensor_to_pil(t.requires_grad_(False))
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img)[0, :, 0], [0, 255, 128, 127])


def test_tensor_to_pil_rejects_bad_tensors():
    with pytest.raises(ValueError, match="shape"):
        tensor_to_pil(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        tensor_to_pil(torch.full((3, 2, 2), float("nan")))


def test_pil_to_tensor_converts_other_modes():
    t = pil_to_tensor(Image.new("L", (3, 2), 77))
    assert t.shape == (1, 3, 2, 3) and torch.all(t == 77)


# --- bundled examples --------------------------------------------------------------------------


def _example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def test_bundled_examples_load_and_fit_limits():
    files = _example_files()
    content = [p for p in files if p.parent.name == "content"]
    style = [p for p in files if p.parent.name == "style"]
    assert len(content) >= 3 and len(style) >= 3
    for path in files:
        img = load_image(path, min_side=64)
        assert img.mode == "RGB"
        assert 256 <= max(img.size) <= 512, (path, img.size)
        assert path.name in (EXAMPLES / "SOURCES.md").read_text(), f"{path.name} missing from SOURCES.md"


def test_examples_directory_is_small():
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024, f"examples/ is {total / 1e6:.2f} MB"
