"""images.decode and images.conform: every odd file becomes an upright uint8 array or a BadImage."""
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import ODD_PHOTO_OUTCOMES, encode, odd_photo, pattern_images  # noqa: E402

from imagerec import images  # noqa: E402
from imagerec.images import BadImage  # noqa: E402

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(size: int = 24) -> np.ndarray:
    return pattern_images([4], size, 3)[0]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("color_mode, channels", [("rgb", 3), ("grayscale", 1)])
def test_valid_file_decodes_to_square_uint8(fmt, color_mode, channels):
    array = images.decode(encode(photo(), fmt), 16, color_mode)
    assert array.shape == (16, 16, channels) and array.dtype == np.uint8


def test_png_keeps_exact_pixels_at_its_own_size():
    assert np.array_equal(images.decode(encode(photo(), "PNG"), 24, "rgb"), photo())


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello, this is a text file\n" * 10, "not an image"),
    (encode(photo(64), "JPEG")[:300], "cannot decode"),
], ids=["zero-bytes", "text", "truncated-jpeg"])
def test_unreadable_file_is_bad_image(data, reason):
    with pytest.raises(BadImage, match=reason):
        images.decode(data, 16, "rgb")


def test_file_above_max_image_bytes_is_refused(monkeypatch):
    data = encode(photo(), "PNG")
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(data) - 1)
    with pytest.raises(BadImage, match="larger than"):
        images.decode(data, 16, "rgb")


def test_grayscale_image_decoded_as_rgb_has_three_equal_channels():
    gray = photo()[..., 0]
    array = images.decode(encode(gray, "PNG"), 24, "rgb")
    assert array.shape == (24, 24, 3)
    assert np.array_equal(array[..., 0], gray) and np.array_equal(array[..., 1], gray)
    assert np.array_equal(array[..., 2], gray)


def test_rgb_image_decoded_as_grayscale_has_one_luminance_channel():
    array = images.decode(save(Image.new("RGB", (8, 8), RED), "PNG"), 8, "grayscale")
    assert array.shape == (8, 8, 1)
    assert np.all(array == 76)  # ITU-R 601 luma of pure red: 0.299 * 255


def test_cmyk_jpeg_decodes_to_rgb():
    array = images.decode(save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), 8, "rgb")
    assert array.shape == (8, 8, 3)
    assert np.all(array[..., 0] > 200) and np.all(array[..., 1:] < 50)


def test_16bit_png_is_scaled_to_8bit_not_clipped():
    image = Image.fromarray(np.array([[0, 65535], [32768, 257]], dtype=np.uint16))
    assert image.mode == "I;16"
    array = images.decode(save(image, "PNG"), 2, "grayscale")
    assert array[..., 0].tolist() == [[0, 255], [128, 1]]


def test_transparent_palette_pixel_becomes_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, *RED])  # index 0 black (transparent), index 1 red
    image.putpixel((0, 0), 1)
    array = images.decode(save(image, "PNG", transparency=0), 4, "rgb")
    assert tuple(array[0, 0]) == RED
    assert tuple(array[3, 3]) == WHITE


def test_transparent_rgba_pixel_becomes_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (*BLUE, 255))
    array = images.decode(save(image, "PNG"), 4, "rgb")
    assert tuple(array[0, 0]) == BLUE and tuple(array[3, 3]) == WHITE


def red_side(array: np.ndarray) -> str:
    """Which half of the image is red (the other half is blue)."""
    redness = array[..., 0].astype(int) - array[..., 2].astype(int)
    half = array.shape[0] // 2
    sides = {"top": redness[:half].mean(), "bottom": redness[half:].mean(),
             "left": redness[:, :half].mean(), "right": redness[:, half:].mean()}
    return max(sides, key=sides.get)


@pytest.mark.parametrize("orientation, side", [(1, "left"), (6, "top"), (8, "bottom"), (3, "right")])
def test_exif_orientation_is_applied_before_resizing(orientation, side):
    image = Image.new("RGB", (40, 20), BLUE)  # landscape: red left half, blue right half
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    assert red_side(images.decode(save(image, "JPEG", exif=exif), 8, "rgb")) == side


@pytest.mark.parametrize("max_pixels", [3000, 1000], ids=["bomb-warning", "bomb-error"])
def test_decompression_bomb_is_bad_image(monkeypatch, max_pixels):
    data = encode(photo(64), "PNG")  # 4096 pixels: above the limit (warning), above twice it (error)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    with pytest.raises(BadImage, match="decompression bomb"):
        images.decode(data, 16, "rgb")


def test_one_pixel_image_resizes_to_a_uniform_square():
    array = images.decode(save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), 5, "rgb")
    assert array.shape == (5, 5, 3)
    assert np.all(array == (10, 200, 30))


def test_conform_adds_channel_axis_and_keeps_values_when_size_matches():
    gray = pattern_images(range(3), 28, 1)[..., 0]
    conformed = images.conform(gray, 28, "grayscale")
    assert conformed.shape == (3, 28, 28, 1) and conformed.dtype == np.uint8
    assert np.array_equal(conformed[..., 0], gray)


@pytest.mark.parametrize("shape, size, color_mode, expected", [
    ((3, 28, 28), 32, "rgb", (3, 32, 32, 3)),
    ((3, 32, 32, 3), 16, "grayscale", (3, 16, 16, 1)),
    ((3, 32, 32, 3), 48, "rgb", (3, 48, 48, 3)),
    ((2, 28, 28, 1), 28, "rgb", (2, 28, 28, 3)),
])
def test_conform_resizes_and_converts_colour(shape, size, color_mode, expected):
    batch = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    conformed = images.conform(batch, size, color_mode)
    assert conformed.shape == expected and conformed.dtype == np.uint8


def test_conform_grayscale_to_rgb_repeats_the_channel():
    gray = pattern_images(range(2), 28, 1)
    rgb = images.conform(gray, 28, "rgb")
    assert all(np.array_equal(rgb[..., c], gray[..., 0]) for c in range(3))


@pytest.mark.parametrize("kind", list(ODD_PHOTO_OUTCOMES))
def test_each_kind_of_odd_photo_is_converted_or_refused_with_its_reason(kind):
    outcome = ODD_PHOTO_OUTCOMES[kind]
    if outcome == "kept":
        array = images.decode(odd_photo(kind), 16, "rgb")
        assert array.shape == (16, 16, 3) and array.dtype == np.uint8
    else:
        with pytest.raises(BadImage, match=outcome):
            images.decode(odd_photo(kind), 16, "rgb")


def test_an_unexpected_error_inside_pillow_is_a_bad_image_not_a_crash(monkeypatch):
    # Fuzzed TIFFs, for one, can make a Pillow plugin raise TypeError or struct.error.
    def broken(image):
        raise TypeError("'IFDRational' object cannot be interpreted as an integer")
    monkeypatch.setattr(images.ImageOps, "exif_transpose", broken)
    with pytest.raises(BadImage, match="cannot decode: TypeError: 'IFDRational'"):
        images.decode(encode(photo(), "JPEG"), 16, "rgb")


def test_memory_error_while_decoding_stops_the_stage_instead_of_dropping_the_photo(monkeypatch):
    def out_of_memory(image):
        raise MemoryError()
    monkeypatch.setattr(images.ImageOps, "exif_transpose", out_of_memory)
    with pytest.raises(MemoryError):
        images.decode(encode(photo(), "JPEG"), 16, "rgb")
