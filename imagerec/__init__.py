"""imagerec: a reproducible image-recognition pipeline (DVC stages over TensorFlow/Keras)."""

__version__ = "0.1.0"
