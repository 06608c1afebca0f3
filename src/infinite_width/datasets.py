"""Real image data sets: scikit-learn's digits, MNIST, Fashion-MNIST and CIFAR-10.

One entry point, :func:`load`, returns a frozen :class:`Dataset` of float32
arrays ready for kernels and networks: inputs flattened to (N, d) or kept as
NHWC images (N, H, W, C), one-hot targets (N, k) and integer labels (N,).

Where the files are. ``digits`` ships inside scikit-learn and needs no files
(it is the default for a first run). The others are read from a data folder,
given as ``data_dir=`` or by the environment variable ``INFINITE_WIDTH_DATA``,
in the standard layout::

    <data_dir>/mnist/train-images-idx3-ubyte.gz          (and train-labels-idx1-ubyte.gz,
    <data_dir>/fashion-mnist/train-images-idx3-ubyte.gz   t10k-images-idx3-ubyte.gz,
                                                           t10k-labels-idx1-ubyte.gz)
    <data_dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch

idx files may also be stored decompressed (same names without ``.gz``);
a CIFAR-10 folder may hold any subset of the five training batches.
Nothing is cached on disk: the files are decoded on every call (full MNIST in
under a second). :func:`download` (or ``load(..., download=True)``) fetches
the official files for users with internet, verifying their SHA-256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "Dataset",
    "DatasetFileError",
    "available",
    "download",
    "load",
    "sha256",
    "verify_sha256",
]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DATA_ENV_VAR = "INFINITE_WIDTH_DATA"
STANDARDIZATIONS = ("channel", "feature", "global")

_FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}
_IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
_PIXEL_MAX = {"digits": 16.0, "mnist": 255.0, "fashion_mnist": 255.0, "cifar10": 255.0}
_CLASS_NAMES = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}

# idx files (without ".gz") -> SHA-256 of their decompressed content, which is
# what the official releases and every mirror agree on (gzip headers differ).
_IDX_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# Mirrors tried in order (yann.lecun.com refuses automated downloads).
_IDX_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": (
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_FILES = _CIFAR10_TRAIN_BATCHES + ("test_batch", "batches.meta")

# digits has no official split: 36 test images per class (360 in all), drawn once.
_DIGITS_TEST_PER_CLASS = 36
_DIGITS_SPLIT_SEED = 0
_CHUNK = 1 << 20


class DatasetFileError(ValueError):
    """A data file is corrupt, truncated or not what its name says; the message names the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of an image classification data set (arrays are read-only).

    Attributes:
      name: one of :data:`DATASETS`.
      x_train, x_test: float32 inputs, (N, d) with ``d = H*W*C`` (flattened in
        NHWC order) or (N, H, W, C) images.
      y_train, y_test: float32 targets (N, k): one-hot, or one-hot minus 1/k when
        centred.
      labels_train, labels_test: int32 labels (N,) in ``0..k-1``; label ``i``
        is the original class ``classes[i]``.
      num_classes: k.
      image_shape: (H, W, C) of one image.
      classes: the original class ids kept, in label order.
      class_names: a name for each of the k labels.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray
    labels_test: np.ndarray
    num_classes: int
    image_shape: Tuple[int, int, int]
    classes: Tuple[int, ...]
    class_names: Tuple[str, ...]

    @property
    def n_train(self) -> int:
        return len(self.labels_train)

    @property
    def n_test(self) -> int:
        return len(self.labels_test)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"num_classes={self.num_classes}, classes={self.classes})"
        )


# --------------------------------------------------------------------------- checksums


def sha256(path, *, decompress: bool = False) -> str:
    """Hex SHA-256 of the file at ``path``, or of its gzip-decompressed content if ``decompress``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    digest = hashlib.sha256()
    with _gzip_errors(path):
        with (gzip.open(path, "rb") if decompress else open(path, "rb")) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path, expected: str, *, decompress: bool = False) -> None:
    """Raise :class:`DatasetFileError` naming ``path`` unless its SHA-256 is ``expected``.

    ``decompress=True`` checks the gzip-decompressed content (how MNIST and
    Fashion-MNIST checksums are given: mirrors recompress the files).
    """
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
        raise ValueError(f"expected must be a SHA-256 hex digest of 64 characters, got {expected!r}")
    actual = sha256(path, decompress=decompress)
    if actual != expected.lower():
        what = "decompressed content" if decompress else "content"
        raise DatasetFileError(f"{path}: checksum mismatch: SHA-256 of its {what} is {actual}, expected {expected.lower()}")


@contextlib.contextmanager
def _gzip_errors(path: Path):
    """Turn the ways a gzip stream fails into a DatasetFileError naming the file."""
    try:
        yield
    except EOFError as error:
        raise DatasetFileError(f"{path}: truncated gzip file (the stream ends early): {error}") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DatasetFileError(f"{path}: not a valid gzip file: {error}") from error


# --------------------------------------------------------------------------- data folder


def _data_dir(data_dir, name: str, create: bool = False) -> Path:
    """The data folder from the argument or the environment; a clear error if neither.

    A missing folder is created if ``create`` (for downloads), else an error.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV_VAR) or None
        if data_dir is None:
            raise ValueError(
                f"dataset {name!r} is read from files: pass data_dir=<folder> or set the environment "
                f"variable {DATA_ENV_VAR}; the folder holds mnist/, fashion-mnist/ and cifar-10-batches-py/ "
                f"(download(name, data_dir) fetches them). 'digits' needs no files."
            )
    elif not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
    path = Path(data_dir).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist")
    return path


def _find_idx(folder: Path, stem: str) -> Optional[Path]:
    """``stem.gz``, else the decompressed ``stem``, else None."""
    return next((path for path in (folder / f"{stem}.gz", folder / stem) if path.is_file()), None)


def _idx_file(folder: Path, stem: str) -> Path:
    path = _find_idx(folder, stem)
    if path is None:
        raise FileNotFoundError(
            f"{folder / (stem + '.gz')}: missing file (nor is a decompressed {stem} there); "
            f"download(name, data_dir) fetches it"
        )
    return path


def _cifar_train_batches(folder: Path) -> Sequence[Path]:
    return [folder / batch for batch in _CIFAR10_TRAIN_BATCHES if (folder / batch).is_file()]


def _present(name: str, root: Path) -> bool:
    folder = root / _FOLDERS[name]
    if name == "cifar10":
        return (folder / "test_batch").is_file() and bool(_cifar_train_batches(folder))
    stems = [stem for pair in _IDX_SPLITS.values() for stem in pair]
    return all(_find_idx(folder, stem) is not None for stem in stems)


def available(data_dir=None) -> Tuple[str, ...]:
    """Names of the data sets that can be loaded: ``"digits"`` always, the others if their files are present.

    ``data_dir`` (or ``INFINITE_WIDTH_DATA``) is the data folder; with neither
    only ``("digits",)`` is available. Files are looked for, not validated.
    """
    if data_dir is None and not os.environ.get(DATA_ENV_VAR):
        return ("digits",)
    root = _data_dir(data_dir, "available")
    return ("digits",) + tuple(name for name in DATASETS[1:] if _present(name, root))


# --------------------------------------------------------------------------- decoders


def _read_idx(path: Path, image_shape: Tuple[int, ...]) -> np.ndarray:
    """An idx file of unsigned bytes, shape (N, *image_shape) (labels: image_shape = ())."""
    if path.suffix == ".gz":
        with _gzip_errors(path):
            raw = gzip.decompress(path.read_bytes())
    else:
        raw = path.read_bytes()
    ndim = 1 + len(image_shape)
    expected_magic = 0x0800 | ndim  # two zero bytes, type 0x08 (unsigned byte), ndim
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetFileError(f"{path}: truncated: {len(raw)} bytes, shorter than the {header_len}-byte idx header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetFileError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(idx file of unsigned bytes with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    if tuple(dims[1:]) != tuple(image_shape):
        raise DatasetFileError(f"{path}: wrong item shape {tuple(dims[1:])} in the header, expected {tuple(image_shape)}")
    expected_size = header_len + int(np.prod(dims))
    if len(raw) != expected_size:
        state = "truncated" if len(raw) < expected_size else "trailing bytes"
        raise DatasetFileError(
            f"{path}: wrong size ({state}): the header declares shape {dims}, i.e. {expected_size} bytes, "
            f"but the content has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and labels.max() >= num_classes:
        raise DatasetFileError(f"{path}: label {int(labels.max())} out of range 0..{num_classes - 1}")


def _load_idx(name: str, root: Path):
    folder = root / _FOLDERS[name]
    image_shape = _IMAGE_SHAPES[name][:2]
    arrays = []
    for images_stem, labels_stem in _IDX_SPLITS.values():
        images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
        images = _read_idx(images_path, image_shape)
        labels = _read_idx(labels_path, ())
        if len(images) != len(labels):
            raise DatasetFileError(f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images")
        _check_labels(labels_path, labels, 10)
        arrays += [images[..., None], labels]
    return tuple(arrays)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else (a pickle can run any code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays")
        # Python 2 era pickles name numpy.core, which numpy 2 renamed numpy._core.
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def _read_cifar_batch(path: Path):
    """Images (N, 32, 32, 3) uint8 and labels (N,) of one CIFAR-10 python batch."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing batch file")
    try:
        with open(path, "rb") as stream:
            batch = _NumpyOnlyUnpickler(stream, encoding="bytes").load()
    except (pickle.PickleError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as error:
        kind = "truncated" if isinstance(error, EOFError) else "bad pickle"
        raise DatasetFileError(f"{path}: {kind}, not a CIFAR-10 python batch: {error!r}") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetFileError(f"{path}: not a CIFAR-10 batch: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DatasetFileError(f"{path}: b'data' must be an N x 3072 uint8 array, got shape {shape} dtype {dtype}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise DatasetFileError(f"{path}: b'labels' must be {len(data)} integers, got shape {labels.shape} dtype {labels.dtype}")
    _check_labels(path, labels, 10)
    # Rows are channel-major (1024 red, 1024 green, 1024 blue values, each row by row).
    images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _load_cifar10(root: Path):
    folder = root / _FOLDERS["cifar10"]
    batches = _cifar_train_batches(folder)
    if not batches:
        raise FileNotFoundError(
            f"{folder}: missing batch file: none of the training batches {', '.join(_CIFAR10_TRAIN_BATCHES)} is there"
        )
    train = [_read_cifar_batch(path) for path in batches]
    x_test, labels_test = _read_cifar_batch(folder / "test_batch")
    return (np.concatenate([x for x, _ in train]), np.concatenate([l for _, l in train]), x_test, labels_test)


def _load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # values 0..16
    labels = digits.target
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    test = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == c), _DIGITS_TEST_PER_CLASS, replace=False) for c in range(10)
    ]))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return images[train], labels[train], images[test], labels[test]


def _load_raw(name: str, data_dir, download_missing: bool):
    """(x_train, labels_train, x_test, labels_test): uint8 NHWC images and integer labels."""
    if name == "digits":
        return _load_digits()
    root = _data_dir(data_dir, name, create=download_missing)
    if download_missing and not _present(name, root):
        download(name, root)
    return _load_cifar10(root) if name == "cifar10" else _load_idx(name, root)


# --------------------------------------------------------------------------- subsets and preprocessing


def _check_name(name) -> str:
    """The canonical name (``"fashion-mnist"`` is accepted for ``"fashion_mnist"``)."""
    canonical = name.replace("-", "_").lower() if isinstance(name, str) else None
    if canonical not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return canonical


def _check_count(argument: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{argument} must be a positive integer or None, got {value!r}")


def _check_classes(classes, num_classes: int) -> Tuple[int, ...]:
    if classes is None:
        return tuple(range(num_classes))
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise TypeError(f"classes must be a sequence of class ids, got {classes!r}")
    classes = tuple(classes)
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < num_classes:
            raise ValueError(f"classes must be integers in 0..{num_classes - 1}, got {c!r} in {classes}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must not repeat a class, got {classes}")
    if len(classes) < 2:
        raise ValueError(f"classes must name at least 2 classes, got {classes}")
    return tuple(int(c) for c in classes)


def _relabel(images, labels, classes):
    """Keep the examples of ``classes`` (file order) with labels renumbered 0..k-1 in ``classes`` order."""
    if classes == tuple(range(10)):
        return images, labels.astype(np.int32)
    lookup = np.full(10, -1)
    lookup[list(classes)] = np.arange(len(classes))
    new_labels = lookup[labels]
    keep = new_labels >= 0
    return images[keep], new_labels[keep].astype(np.int32)


def _balanced_subset(split: str, labels: np.ndarray, n: Optional[int], class_names, rng) -> np.ndarray:
    """Indices of n examples, n/k of each class, in a random order; all indices in order if n is None."""
    if n is None:
        return np.arange(len(labels))
    num_classes = len(class_names)
    if n % num_classes:
        raise ValueError(f"n_{split}={n} must be a multiple of the number of classes {num_classes} (equal count per class)")
    per_class = n // num_classes
    picks = []
    for label, class_name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(
                f"n_{split}={n} asks for {per_class} examples of class {class_name!r} but the {split} set has only {len(members)}"
            )
        picks.append(rng.choice(members, per_class, replace=False))
    return rng.permutation(np.concatenate(picks))


def _standardize(x_train: np.ndarray, x_test: np.ndarray, how: str) -> None:
    """Subtract the training mean and divide by the training std, in place (NHWC float32 arrays)."""
    axes = {"channel": (0, 1, 2), "feature": 0, "global": None}[how]
    mean = x_train.mean(axis=axes, dtype=np.float64, keepdims=True).astype(np.float32)
    x_train -= mean  # in place: the float32 arrays are ours, and full-size float64 copies are slow
    x_test -= mean
    std = np.sqrt(np.mean(np.square(x_train), axis=axes, dtype=np.float64, keepdims=True))
    std = np.where(std > 0, std, 1.0).astype(np.float32)  # a constant feature is only centred
    x_train /= std
    x_test /= std


def _standardization(standardize) -> Optional[str]:
    if standardize is True:
        return "channel"
    if standardize is False or standardize is None:
        return None
    if standardize not in STANDARDIZATIONS:
        raise ValueError(f"unknown standardize={standardize!r}; expected True, False or one of {STANDARDIZATIONS}")
    return standardize


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def load(
    name: str,
    data_dir=None,
    *,
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    seed: int = 0,
    classes: Optional[Sequence[int]] = None,
    flatten: bool = True,
    standardize: Union[bool, str] = True,
    center_targets: bool = False,
    download: bool = False,
) -> Dataset:
    """Load a data set as float32 arrays.

    Args:
      name: ``"digits"`` (scikit-learn's 1797 8x8 digits, a fixed class-balanced
        1437/360 train/test split; needs no files), ``"mnist"``,
        ``"fashion_mnist"`` or ``"cifar10"``.
      data_dir: the data folder (see the module docstring); default: the
        environment variable ``INFINITE_WIDTH_DATA``. Unused for digits.
      n_train, n_test: class-balanced random subsets of this many examples
        (a multiple of the number of classes: equal count per class), in a
        random order drawn from ``seed``. ``None``: every example, in file order.
      seed: the subsets' seed (train and test subsets are drawn independently).
      classes: original class ids to keep, e.g. ``(0, 1)`` for a binary
        problem; labels are renumbered ``0..k-1`` in this order.
      flatten: inputs of shape (N, H*W*C), flattened in NHWC order; else NHWC
        images (N, H, W, C).
      standardize: ``True`` or ``"channel"``: subtract the mean and divide by
        the standard deviation of each channel over all training pixels
        (global for grayscale); ``"feature"``: per pixel and channel (note: it
        blows up pixels that are nearly always zero, like MNIST's border);
        ``"global"``: one mean and std; ``False``: pixels scaled to [0, 1].
        Statistics come from the returned training set only; constant features
        are only centred.
      center_targets: targets ``one_hot - 1/k`` (rows sum to 0), as kernel
        regression papers use; default plain one-hot.
      download: fetch the official files into the data folder first if they
        are missing (:func:`download`).

    Returns:
      A :class:`Dataset`; ``x_*`` (N, d) or (N, H, W, C), ``y_*`` (N, k),
      ``labels_*`` (N,).
    """
    name = _check_name(name)
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    selected = _check_classes(classes, 10)
    how = _standardization(standardize)

    x_train, labels_train, x_test, labels_test = _load_raw(name, data_dir, download)
    x_train, labels_train = _relabel(x_train, labels_train, selected)
    x_test, labels_test = _relabel(x_test, labels_test, selected)
    class_names = tuple(_CLASS_NAMES[name][c] for c in selected)
    train_rows = _balanced_subset("train", labels_train, n_train, class_names, np.random.default_rng([seed, 0]))
    test_rows = _balanced_subset("test", labels_test, n_test, class_names, np.random.default_rng([seed, 1]))
    x_train, labels_train = x_train[train_rows], labels_train[train_rows]
    x_test, labels_test = x_test[test_rows], labels_test[test_rows]

    scale = np.float32(1.0 / _PIXEL_MAX[name])
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    x_train *= scale
    x_test *= scale
    if how is not None:
        _standardize(x_train, x_test, how)
    if flatten:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)

    k = len(selected)
    offset = np.float32(1.0 / k) if center_targets else np.float32(0.0)
    y_train, y_test = (np.eye(k, dtype=np.float32)[labels] - offset for labels in (labels_train, labels_test))
    arrays = [x_train, y_train, x_test, y_test, labels_train, labels_test]
    return Dataset(
        name, *(_read_only(np.ascontiguousarray(a)) for a in arrays),
        num_classes=k, image_shape=_IMAGE_SHAPES[name], classes=selected, class_names=class_names,
    )


# --------------------------------------------------------------------------- download


def _fetch(url: str, target: Path, progress: bool) -> None:
    """Stream ``url`` into the file ``target``, with a tqdm bar if ``progress``."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "infinite_width"})
    with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _download_verified(urls: Sequence[str], target: Path, expected: str, decompress: bool, progress: bool) -> None:
    """Fetch from the first URL that works into ``target`` once its checksum is verified.

    A checksum mismatch is raised at once (a mirror serving other content is
    not silently replaced by the next); network errors move on to the next URL.
    """
    errors = []
    for url in urls:
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            part = Path(scratch) / target.name
            try:
                _fetch(url, part, progress)
            except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
                errors.append(f"{url}: {error}")
                continue
            try:
                verify_sha256(part, expected, decompress=decompress)
            except DatasetFileError as error:
                raise DatasetFileError(f"{target.name} downloaded from {url} is not the official file: {error}") from None
            os.replace(part, target)
            return
    raise OSError(f"could not download {target.name}:\n  " + "\n  ".join(errors))


def download(name: str, data_dir=None, *, progress: bool = True) -> Optional[Path]:
    """Fetch the official files of ``name`` into ``data_dir`` (standard layout), verifying SHA-256.

    ``data_dir`` defaults to ``INFINITE_WIDTH_DATA`` and is created if needed.
    Files already present with the right checksum are kept. MNIST and
    Fashion-MNIST checksums are of the decompressed idx content; CIFAR-10's
    of the official ``cifar-10-python.tar.gz``, whose batches are extracted
    (the archive is then deleted). ``"digits"`` ships with scikit-learn:
    nothing to fetch. Returns the data set's folder (None for digits).
    """
    name = _check_name(name)
    if name == "digits":
        return None
    folder = _data_dir(data_dir, name, create=True) / _FOLDERS[name]
    folder.mkdir(exist_ok=True)
    if name == "cifar10":
        _download_cifar10(folder, progress)
        return folder
    for stem, expected in _IDX_SHA256[name].items():
        target = folder / f"{stem}.gz"
        if target.is_file():
            try:
                verify_sha256(target, expected, decompress=True)
                continue
            except DatasetFileError:
                pass  # corrupt or partial: fetch again
        _download_verified([base + target.name for base in _IDX_MIRRORS[name]], target, expected, True, progress)
    return folder


def _download_cifar10(folder: Path, progress: bool) -> None:
    if (folder / "test_batch").is_file() and len(_cifar_train_batches(folder)) == len(_CIFAR10_TRAIN_BATCHES):
        return
    archive = folder.parent / "cifar-10-python.tar.gz"
    _download_verified([_CIFAR10_URL], archive, _CIFAR10_SHA256, False, progress)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                # Only the known regular files, written by basename: no path from the archive is trusted.
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in _CIFAR10_FILES:
                    with tar.extractfile(member) as source, open(folder / base, "wb") as out:
                        shutil.copyfileobj(source, out)
    finally:
        archive.unlink()
