"""Loading, validating and converting images: anything a person hands us becomes an 8-bit RGB PIL image.

Every failure is an :class:`ImageError` whose message names the image (its path, a caller-given
name, or "uploaded image") and says what is wrong with it, so the CLI and the app can show it as
one line.

Usage::

    from nst_core.image.io import load_image, pil_to_tensor, tensor_to_pil

    img = load_image("examples/content/lakeside.jpg", max_side=512, min_side=16)
    t = pil_to_tensor(img)          # (1, 3, H, W) float32, RGB, 0..255
    tensor_to_pil(t).save("copy.png")
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_core.core.errors import UserError

ImageSource = str | os.PathLike | bytes | bytearray | IO[bytes] | Image.Image | np.ndarray

#: File suffixes taken for images when a folder is searched.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 50_000_000
UPLOAD_LABEL = "uploaded image"

# File signatures of formats people actually upload. When PIL cannot identify a file that starts
# with one of these, the file is a damaged image rather than "not an image", and we say so.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageError(UserError):
    """An image that cannot be used: missing, not an image, damaged, too large or too small."""


def load_image(
    src: ImageSource,
    max_side: int | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Load ``src`` as an 8-bit RGB PIL image, upright, at most ``max_side`` px on its longer side.

    ``src`` may be a path (str or Path), the bytes of an image file, a binary file-like object,
    a PIL image, or a numpy array (HxW, HxWx1, HxWx3 or HxWx4; uint8, uint16 or float in 0..1).
    EXIF orientation is applied; grayscale, 16-bit, palette, CMYK and images with transparency
    are converted to RGB (transparent areas become white). The image is shrunk with Lanczos
    filtering so its longer side is at most ``max_side``; it is never enlarged.

    ``max_pixels`` bounds width*height, checked from the header before any pixel is decoded (PIL's
    own decompression-bomb limit applies as well). ``min_side``, if given, is the smallest allowed
    shorter side after resizing (the deepest VGG layer a loss uses needs a minimum input size).

    ``name`` is how error messages refer to the image; by default the path, or "uploaded image".
    The caller's PIL image or array is never modified.

    Example::

        img = load_image("photo.jpg", max_side=512)
        img = load_image(uploaded_bytes, name="photo.jpg", min_side=16)
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    label = name or _default_label(src)

    if isinstance(src, np.ndarray):
        _check_pixel_count(label, src.shape[1] if src.ndim >= 2 else 0, src.shape[0], max_pixels)
        img = _array_to_rgb(src, label)
    elif isinstance(src, Image.Image):
        _check_pixel_count(label, src.width, src.height, max_pixels)
        img = _decoded_to_rgb(src, label, max_side, owned=False)
    else:
        data = _read_source(src, label)
        img = _decode_bytes(data, label, max_side, max_pixels)

    if max_side is not None:
        img = resize_max_side(img, max_side)  # no-op when decoding already resized it
    _check_min_side(img, label, min_side, resized=max_side is not None)
    return img


def input_label(role: str, src: object, full_path: bool = True) -> str:
    """How an input is named in errors: its role plus its path (or only its file name, for server-side
    upload paths a person never typed); only the role for in-memory images.

    >>> input_label("style image 2", "/tmp/gradio/abc/starry.jpg", full_path=False)
    "style image 2 'starry.jpg'"
    """
    if not isinstance(src, (str, os.PathLike)):
        return role
    return f"{role} {os.fsdecode(src)}" if full_path else f"{role} '{Path(src).name}'"


def find_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Files with an image suffix in ``folder`` (and its subfolders when ``recursive``), sorted; [] if no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resize_max_side(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink ``img`` (Lanczos) so its longer side is at most ``max_side``, keeping the aspect ratio.

    Never enlarges: an image that already fits is returned unchanged (the same object).
    """
    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    target = _fit_size(img.size, max_side)
    if target == img.size:
        return img
    return resize_to(img, target)


def resize_to(img: Image.Image, size_wh: tuple[int, int]) -> Image.Image:
    """Resize ``img`` to exactly ``size_wh`` = (width, height) with Lanczos filtering."""
    width, height = (int(v) for v in size_wh)
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if (width, height) == img.size:
        return img.copy()
    return img.resize((width, height), Image.Resampling.LANCZOS)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 tensor of ``img``'s RGB values in 0..255 (other modes are converted first)."""
    if img.mode != "RGB":
        img = _decoded_to_rgb(img, UPLOAD_LABEL, None, owned=False)
    pixels = np.asarray(img, dtype=np.float32)  # H, W, 3
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """RGB PIL image from a (1, 3, H, W) or (3, H, W) tensor of 0..255 values (clamped, rounded)."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape (1, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float32)
    if torch.isnan(t).any():
        # A NaN image means the optimization diverged; turning it into black would hide that.
        raise ValueError("image tensor contains NaN values")
    pixels = t.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels, "RGB")


# --- internals ---------------------------------------------------------------------------------


def _default_label(src: object) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(src)
    file_name = getattr(src, "name", None)
    if isinstance(file_name, str) and file_name:
        return file_name
    file_name = getattr(src, "filename", None)  # PIL images opened from a file
    if isinstance(file_name, str) and file_name:
        return file_name
    return UPLOAD_LABEL


def _read_source(src: object, label: str) -> bytes:
    """All bytes of a path, bytes object or binary file-like object."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(os.fsdecode(src))
        if not path.exists():
            raise ImageError(f"{label}: file not found")
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"{label}: cannot read file ({e.strerror or e})") from None
    elif hasattr(src, "read"):
        try:
            data = src.read()
        except OSError as e:
            raise ImageError(f"{label}: cannot read ({e})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{label}: file object must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageError(
            f"{label}: unsupported image source of type {type(src).__name__}; "
            "give a path, bytes, a binary file object, a PIL image or a numpy array"
        )
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes)")
    return data


def _decode_bytes(data: bytes, label: str, max_side: int | None, max_pixels: int) -> Image.Image:
    """Decode an image file's bytes fully, refusing oversized images before decoding pixels."""
    with warnings.catch_warnings():
        # PIL only warns between its limit and twice its limit; a bomb is a bomb either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            opened = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{label}: image is too large to decode safely ({e})") from None
        except UnidentifiedImageError:
            kind = _signature_format(data)
            if kind:
                raise ImageError(f"{label}: truncated or corrupt {kind} image file (cannot read its header)") from None
            raise ImageError(f"{label}: not an image, or an unrecognized image format") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            kind = _signature_format(data)
            kind = f" {kind}" if kind else ""
            raise ImageError(f"{label}: truncated or corrupt{kind} image file ({e})") from None

    with opened:
        # Header size only: no pixel has been decoded yet.
        _check_pixel_count(label, opened.width, opened.height, max_pixels)
        return _decoded_to_rgb(opened, label, max_side, owned=True)


def _decoded_to_rgb(img: Image.Image, label: str, max_side: int | None, owned: bool) -> Image.Image:
    """Fully decode ``img`` (so truncation shows up here), make it upright, convert to RGB and,
    if ``max_side`` is given, shrink it to fit. ``owned``: we opened it and may change it in place."""
    target = _fit_size(img.size, max_side) if max_side is not None else None
    if owned and target is not None and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far faster and lighter for big
        # photos. Ask for at least the size we will resize to, so quality is unaffected.
        img.draft(img.mode, target)
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label}: image is too large to decode safely ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
        kind = f" {img.format}" if img.format else ""
        raise ImageError(f"{label}: truncated or corrupt{kind} image file ({e})") from None
    stored_size = img.size
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a malformed EXIF block should not make a good image unusable
        upright = img
    try:
        rgb = _to_rgb(upright)
    except ValueError as e:
        raise ImageError(f"{label}: unsupported colour mode {upright.mode} ({e})") from None
    if target is not None:
        # The target comes from the header size, so a draft-decoded JPEG ends up exactly the size
        # a full decode would have given; EXIF rotation by 90 degrees swaps it.
        if rgb.size != stored_size:
            target = (target[1], target[0])
        if rgb.size != target:
            return resize_to(rgb, target)
    return rgb.copy() if rgb is img else rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB version of a decoded image of any PIL mode."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's own I;16 -> L conversion clips at 255 instead of scaling; scale 0..65535 -> 0..255.
        return _gray_to_rgb(_scale_uint16(np.asarray(img).astype(np.uint16)))
    if mode == "I":
        values = np.asarray(img).astype(np.int64)
        # 32-bit integer images nearly always hold 16-bit samples (PNG/PGM/TIFF); wider ranges are
        # stretched to fit rather than clipped.
        if values.size and (values.min() < 0 or values.max() > 65535):
            return _gray_to_rgb(_stretch(values.astype(np.float64)))
        return _gray_to_rgb(_scale_uint16(values.astype(np.uint16)))
    if mode == "F":
        floats = np.nan_to_num(np.asarray(img).astype(np.float64), nan=0.0)
        # Float images are 0..1 by convention; anything else is read as 0..255.
        if floats.size and floats.min() >= 0.0 and floats.max() <= 1.0:
            floats = floats * 255.0
        return _gray_to_rgb(np.clip(np.round(floats), 0, 255).astype(np.uint8))
    if mode == "P":
        if "transparency" in img.info or img.palette is not None and img.palette.mode == "RGBA":
            return _composite_on_white(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in _ALPHA_MODES:
        return _composite_on_white(img.convert("RGBA"))
    if mode == "1":
        return img.convert("L").convert("RGB")
    # L, CMYK, YCbCr, HSV, LAB...: PIL converts these (CMYK JPEGs from Photoshop included).
    if mode == "LAB":
        from PIL import ImageCms  # only needed for this rare mode

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        converted = ImageCms.applyTransform(img, transform)  # None only for inPlace=True
        return converted if converted is not None else img.convert("RGB")
    return img.convert("RGB")


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """uint16 0..65535 -> uint8 0..255 by scaling (65535/255 = 257 exactly), rounded."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_rgb(arr: np.ndarray, label: str) -> Image.Image:
    """RGB image from an HxW / HxWx{1,3,4} array of uint8, uint16, bool or float (0..1)."""
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        channels = arr.shape[2]
    elif arr.ndim == 2:
        channels = 1
    else:
        raise ImageError(f"{label}: array of shape {arr.shape} is not an image; expected HxW, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{label}: image is empty ({arr.shape[1]}x{arr.shape[0]} px)")

    if arr.dtype == np.uint8:
        pixels = arr
    elif arr.dtype == np.uint16:
        pixels = _scale_uint16(arr)
    elif arr.dtype == np.bool_:
        pixels = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{label}: float image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        # Tiny overshoots come from resampling and are clipped; real 0..255 data is refused
        # rather than silently turned white.
        if lo < -0.01 or hi > 1.01:
            raise ImageError(
                f"{label}: float image values must be in 0..1, found {lo:g}..{hi:g} (use uint8 for 0..255 data)"
            )
        pixels = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageError(
            f"{label}: unsupported array dtype {arr.dtype}; use uint8 (0..255), uint16 (0..65535) or float (0..1)"
        )

    pixels = np.ascontiguousarray(pixels)
    if channels == 1:
        return _gray_to_rgb(pixels.reshape(pixels.shape[0], pixels.shape[1]))
    if channels == 3:
        return Image.fromarray(pixels, "RGB")
    return _composite_on_white(Image.fromarray(pixels, "RGBA"))


def _check_pixel_count(label: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: image is too large ({width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,})"
        )


def _check_min_side(img: Image.Image, label: str, min_side: int | None, resized: bool) -> None:
    if min_side is None or min(img.size) >= min_side:
        return
    when = " after resizing" if resized else ""
    raise ImageError(
        f"{label}: image is too small ({img.width}x{img.height} px{when}); "
        f"its shorter side must be at least {min_side} px"
    )


def _fit_size(size_wh: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(w, h) scaled down so the longer side is ``max_side``; unchanged if it already fits."""
    w, h = size_wh
    longer = max(w, h)
    if longer <= max_side:
        return (w, h)
    scale = max_side / longer
    return (max(1, round(w * scale)), max(1, round(h * scale)))


def _signature_format(data: bytes) -> str | None:
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None
