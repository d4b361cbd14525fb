"""The built-in datasets' and pretrained weights' official files: where each is published, its
published checksum, and the names a local mirror may hold it under. Data only: params.py reads
it to validate a fetch section, sources.py to download."""
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    # The published checksum: sha256 (64 hex), or md5 (32 hex) where that is all the publisher
    # gives (Keras' weights). None: none published; the first download's is recorded (trust on first use).
    sha256: str | None
    # Names under which a mirror may hold this file, best first. A mirror may hold a stand-in
    # in another format (e.g. CIFAR-10 as an image-folder archive); preprocess reads either.
    mirror_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class KaggleSource:
    """Files of a Kaggle competition, or of a Kaggle dataset ("owner/name"; no files: all of it)."""
    competition: str | None = None
    dataset: str | None = None
    files: tuple[str, ...] = ()


DATASET_SOURCES: dict[str, dict[str, RemoteFile | KaggleSource]] = {
    "mnist": {
        "keras": RemoteFile(
            "mnist.npz",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
            "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
            mirror_names=("mnist.npz",),
        ),
        "kaggle": KaggleSource(competition="digit-recognizer", files=("train.csv",)),
    },
    "cifar10": {
        "toronto": RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            mirror_names=("cifar-10-python.tar.gz", "cifar10_jpeg_full.tar.gz"),
        ),
        "kaggle": KaggleSource(competition="cifar-10", files=("train.7z", "trainLabels.csv")),
    },
    "cats_vs_dogs": {
        "tensorflow": RemoteFile(
            "cats_and_dogs_filtered.zip",
            "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
            None,
            mirror_names=("cats_and_dogs_filtered.zip",),
        ),
        "petimages": RemoteFile(
            "kagglecatsanddogs_5340.zip",
            "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
            None,
            mirror_names=("kagglecatsanddogs_5340.zip",),
        ),
        # Only the labelled train.zip: the competition's whole bundle adds the unlabelled test set.
        "kaggle": KaggleSource(competition="dogs-vs-cats", files=("train.zip",)),
    },
}


def builtin_sources(dataset: str) -> list[str]:
    """The registry's source names for a built-in dataset ([] for any other name)."""
    return list(DATASET_SOURCES.get(dataset, {}))


def kaggle_preset(dataset: str) -> dict | None:
    """The Kaggle download that `{"source": "kaggle"}` alone means for a built-in dataset, as a fetch section."""
    preset = DATASET_SOURCES.get(dataset, {}).get("kaggle")
    if preset is None:
        return None
    return {"source": "kaggle", "competition": preset.competition, "dataset": preset.dataset,
            "files": list(preset.files)}


def _keras_weights(folder: str, filename: str, md5: str | None) -> RemoteFile:
    url = f"https://storage.googleapis.com/tensorflow/keras-applications/{folder}/{filename}"
    return RemoteFile(filename, url, md5, mirror_names=(filename,))


# No-top ImageNet weights, with the URLs and hashes keras/src/applications/*.py publish
# (md5 for EfficientNetV2 and ResNet50V2; none for MobileNetV2).
PRETRAINED_WEIGHTS: dict[tuple[str, str], RemoteFile] = {
    ("mobilenet_v2", "imagenet"): _keras_weights(
        "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", None),
    ("efficientnet_v2_b0", "imagenet"): _keras_weights(
        "efficientnet_v2", "efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff"),
    ("resnet50_v2", "imagenet"): _keras_weights(
        "resnet", "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "fac2f116257151a9d068a22e544a4917"),
}
WEIGHTS_MIRROR_FOLDER = "weights"
