"""Decoding any image file the way training expects: upright, RGB or grayscale, square, uint8."""
import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImagerecError

# File name endings taken for images, in archives and in folders given to `imagerec predict`.
IMAGE_SUFFIXES = {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
MAX_IMAGE_BYTES = 64 * 2**20
# Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS, ~89 megapixels) stays in force.
# What Pillow's format plugins raise on malformed bytes besides OSError and ValueError. Not
# Exception: a MemoryError (or a KeyboardInterrupt) must stop the stage, not drop a good photo.
PLUGIN_ERRORS = (TypeError, struct.error, IndexError, KeyError, ZeroDivisionError, AttributeError, NotImplementedError)


class BadImage(ImagerecError):
    pass


def _to_8bit(image: Image.Image) -> Image.Image:
    # 16/32-bit integer greyscale ("I;16", "I"): scale to 0..255 rather than let convert() clip it.
    array = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def decode(data: bytes, size: int, color_mode: str, max_pixels: int | None = None) -> np.ndarray:
    """Bytes of a JPEG/PNG/... file -> uint8 array (size, size, 1 or 3). Raises BadImage.

    With `max_pixels` (serving), an image of more pixels is refused from its header, before
    anything is decoded, and a JPEG many times larger than `size` is decoded at a reduced scale
    (draft mode: 1/2 to 1/8, never below twice `size`): a 12-megapixel photo then costs a
    few megabytes instead of 36, and the resize below evens out the difference."""
    if not data:
        raise BadImage("empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"file of {len(data)} bytes is larger than {MAX_IMAGE_BYTES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if max_pixels is not None:
                    width, height = image.size
                    if width * height > max_pixels:
                        raise BadImage(f"{width}x{height} pixels: more than the {max_pixels:,} accepted here")
                    if image.format == "JPEG":
                        image.draft("L" if color_mode == "grayscale" else "RGB", (2 * size, 2 * size))
                image.load()
                image = ImageOps.exif_transpose(image)
                if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    image = _to_8bit(image)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    # Transparent pixels become white, not whatever colour they happen to hold.
                    rgba = image.convert("RGBA")
                    image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
                image = image.convert("L" if color_mode == "grayscale" else "RGB")
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(_reason(err)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadImage(_reason(err)) from None
    except PLUGIN_ERRORS as err:
        raise BadImage(f"cannot decode: {type(err).__name__}: {' '.join(str(err).split())[:120]}") from None
    return array[..., None] if array.ndim == 2 else array


def _reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image (unknown format)"
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too many pixels (decompression bomb?)"
    return f"cannot decode: {' '.join(str(err).split())[:120]}"


def conform(images: np.ndarray, size: int, color_mode: str) -> np.ndarray:
    """uint8 arrays (N, H, W[, C]) -> (N, size, size, 1 or 3), converting only what differs."""
    if images.ndim == 3:
        images = images[..., None]
    channels = 1 if color_mode == "grayscale" else 3
    if images.shape[1:] == (size, size, channels):
        return images
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        picture = picture.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(picture, dtype=np.uint8).reshape(size, size, channels)
    return out
