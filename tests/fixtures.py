"""Tiny but real fixture datasets in every source format, and a mirror holding them.

Each class gets its own bright square on a noisy background, so a model can learn the
tiny sets in an epoch or two and the tests can tell learning from chance.
"""
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

WEIGHTS_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def pattern_images(labels, size: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), size, size, channels), dtype=np.uint8)
    cell = max(2, size // 4)
    for i, label in enumerate(labels):
        row, col = divmod(int(label) % 16, 4)  # a distinct square for each of up to 16 classes
        images[i, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell, :] = 230
        if channels == 3:
            images[i, ..., int(label) % 3] //= 2  # a colour cue too
    return images


def make_mnist_npz(path: Path, train_per_class: int = 12, test_per_class: int = 6) -> None:
    y_train = np.repeat(np.arange(10, dtype=np.uint8), train_per_class)
    y_test = np.repeat(np.arange(10, dtype=np.uint8), test_per_class)
    np.savez_compressed(path, x_train=pattern_images(y_train, 28, 1)[..., 0], y_train=y_train,
                        x_test=pattern_images(y_test, 28, 1, seed=1)[..., 0], y_test=y_test)


def encode(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buffer, fmt)
    return buffer.getvalue()


def image_folder_files(classes, splits: dict[str, int], size: int, top: str = "") -> dict[str, bytes]:
    """{archive path: JPEG bytes} laid out [top/]split/class/NNNN.jpg."""
    files = {}
    for s, (split, per_class) in enumerate(splits.items()):
        labels = np.repeat(np.arange(len(classes)), per_class)
        for k, (label, image) in enumerate(zip(labels, pattern_images(labels, size, 3, seed=s))):
            files[f"{top}{split}/{classes[label]}/{k:04d}.jpg"] = encode(image)
    return files


def write_archive(path: Path, files: dict[str, bytes]) -> None:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def make_mobilenet_weights(path: Path) -> None:
    """Randomly initialised MobileNetV2 no-top weights, in the legacy HDF5 layout of the real file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_mirror(root: Path, with_weights: bool = True) -> Path:
    """A mirror in the layout of ../shared/data: <dataset>/<file> plus SHA256SUMS."""
    files = {
        "mnist/mnist.npz": lambda p: make_mnist_npz(p),
        "cifar10/cifar10_jpeg_full.tar.gz": lambda p: write_archive(
            p, image_folder_files(CIFAR_CLASSES, {"train": 10, "test": 4}, 32)),
        "cats_vs_dogs/cats_and_dogs_filtered.zip": lambda p: write_archive(
            p, image_folder_files(["cats", "dogs"], {"train": 16, "validation": 6}, 48, top="cats_and_dogs_filtered/")),
    }
    if with_weights:
        files[f"weights/{WEIGHTS_NAME}"] = make_mobilenet_weights
    lines = []
    for relpath, make in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {relpath}\n")
    (root / "SHA256SUMS").write_text("".join(lines))
    return root


TINY_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TINY_CARD = {"dataset": "mnist", "classes": TINY_CLASSES, "input_shape": [28, 28, 1], "color_mode": "grayscale"}


def write_tiny_model(model_dir: Path) -> Path:
    """A small CNN trained in about a second on the fixture patterns, saved as the pipeline saves one."""
    import keras

    from imagerec import models

    keras.utils.set_random_seed(0)
    labels = np.repeat(np.arange(10), 20)
    model = models.cnn((28, 28, 1), 10, [8], 1, True, 16, 0.0)
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    model.fit(pattern_images(labels, 28, 1).astype("float32"), keras.utils.to_categorical(labels, 10),
              epochs=5, batch_size=16, verbose=0)
    models.save(model, model_dir, TINY_CARD)
    return model_dir


def image_of(label: int, fmt: str = "PNG", size: int = 28, channels: int = 1) -> bytes:
    return encode(pattern_images([label], size, channels, seed=7)[0], fmt)


# --- awkward photos, as real Cats vs Dogs downloads hold them ---------------------------------

RED, BLUE = (255, 0, 0), (0, 0, 255)
# What preprocess does with each kind: "kept" (converted) or the reason it is skipped.
ODD_PHOTO_OUTCOMES = {
    "corrupt": "broken data stream",     # a JPEG with a second start-of-image inside its picture data
    "truncated": "image file is truncated",
    "zero-byte": "empty file",
    "text": "not an image",              # an HTML error page saved as .jpg
    "grayscale": "kept",
    "cmyk": "kept",
    "png-disguised": "kept",
    "exif-rotated": "kept",
}


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def odd_photo(kind: str, seed: int = 0) -> bytes:
    """A file of one of the ODD_PHOTO_OUTCOMES kinds. Kept kinds are recognisable once decoded:
    grayscale has three equal channels, cmyk is pure red, exif-rotated is red on top (the
    stored landscape picture is red left, blue right, with EXIF orientation 6), png-disguised
    is a lossless copy of `pattern_images([1], 48, 3, seed)`."""
    photo = encode(pattern_images([seed % 2], 48, 3, seed=seed)[0])
    if kind == "corrupt":  # as when two downloads were spliced together (random garbage may still decode)
        scan = photo.index(b"\xff\xda")
        start = scan + 2 + int.from_bytes(photo[scan + 2:scan + 4], "big")
        middle = (start + len(photo)) // 2
        return photo[:middle] + b"\xff\xd8" + photo[middle:]
    if kind == "truncated":
        return photo[:len(photo) * 2 // 3]
    if kind == "zero-byte":
        return b""
    if kind == "text":
        return b"<html><body>Rate limit exceeded</body></html>\n"
    if kind == "grayscale":
        return encode(pattern_images([0], 48, 1, seed=seed)[0])
    if kind == "cmyk":
        return _save(Image.new("CMYK", (48, 48), (0, 255, 255, 0)), "JPEG")
    if kind == "png-disguised":
        return encode(pattern_images([1], 48, 3, seed=seed)[0], "PNG")
    if kind == "exif-rotated":
        landscape = Image.new("RGB", (64, 32), BLUE)
        landscape.paste(RED, (0, 0, 32, 32))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display: the left half goes on top
        return _save(landscape, "JPEG", exif=exif)
    raise ValueError(kind)


def odd_photo_files(layout: str, good_per_class: int = 10) -> tuple[dict[str, bytes], dict[str, str]]:
    """A cats-vs-dogs archive's files with one odd file of every kind per class among good photos.

    layout "petimages": PetImages/Cat/7.jpg (Microsoft's zip); "kaggle": train/cat.7.jpg
    (Kaggle's train.zip). Returns the files and {file name: odd kind}.
    """
    files, odd = {}, {}
    kinds = list(ODD_PHOTO_OUTCOMES)
    for c, (pet, folder) in enumerate([("cat", "Cat"), ("dog", "Dog")]):
        labels = [c] * good_per_class
        good = iter(pattern_images(labels, 40, 3, seed=10 + c))
        # Odd files in the middle of the good ones: good, odd, good, odd, ..., good.
        number = 0
        for k in range(good_per_class + len(kinds)):
            name = f"PetImages/{folder}/{number}.jpg" if layout == "petimages" else f"train/{pet}.{number}.jpg"
            number += 1
            if k % 2 == 1 and k // 2 < len(kinds):
                kind = kinds[k // 2]
                files[name], odd[name] = odd_photo(kind, seed=k + c), kind
            else:
                files[name] = encode(next(good))
    if layout == "petimages":
        files["PetImages/Cat/Thumbs.db"] = b"\x00" * 64
        files["readme[1].txt"] = b"The Asirra data set"
    return files, odd


def make_backbone_weights(name: str, path: Path, size: int = 96) -> list[np.ndarray]:
    """Randomly initialised no-top weights of a models.BACKBONES base, in the legacy HDF5 layout
    of Keras' own files (what `weights=<path>` loads). Returns them, to tell they were loaded."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from imagerec import models

    spec = models.BACKBONES[name]
    model = getattr(keras.applications, spec.application)(
        input_shape=(size, size, 3), include_top=False, weights=None, **dict(spec.options))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model.get_weights()


# --- user datasets in any layout (test_layouts) ------------------------------------------------

def write_7z(path: Path, files: dict[str, bytes]) -> None:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(data, name)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """The files as a folder on disk, {relative path: bytes}."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def shade_image(label: int, size: int = 16, mode: str = "RGB", fmt: str = "PNG", height: int | None = None) -> bytes:
    """A flat image whose shade, 30 + 50 * label in every channel, tells its class once decoded."""
    shade = 30 + 50 * label
    colour = {"L": shade, "RGB": (shade,) * 3, "RGBA": (shade, shade, shade, 255)}[mode]
    buffer = io.BytesIO()
    Image.new(mode, (size, height or size), colour).save(buffer, fmt)
    return buffer.getvalue()


def save_prepared(prepared, out_dir: Path) -> None:
    """An in-memory datasets.Prepared written in the layout preprocess writes and datasets.load reads."""
    from imagerec.files import write_json

    for split, data in prepared.splits.items():
        np.save(out_dir / f"{split}_images.npy", data.images, allow_pickle=False)
        np.save(out_dir / f"{split}_labels.npy", data.labels, allow_pickle=False)
    write_json(out_dir / "classes.json", prepared.classes)
