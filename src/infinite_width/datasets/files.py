"""The data files: their layout in the data folder, checksums and parsers (idx, CIFAR-10 pickles).

Every way a file can be wrong (missing, truncated, corrupt, not what its name
says) raises an error naming the file: [`DatasetFileError`][infinite_width.datasets.DatasetFileError] for bad
content, ``FileNotFoundError`` for a missing file or folder.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pickle
import re
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "DatasetFileError",
    "available",
    "sha256",
    "verify_sha256",
    "check_name",
    "data_folder",
    "is_present",
    "read_idx_dataset",
    "read_cifar10",
]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DATA_ENV_VAR = "INFINITE_WIDTH_DATA"

FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}
"""Folder of each data set inside the data folder."""
IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
IDX_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
"""idx file stems (without ".gz") of the images and labels of each split."""
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = CIFAR10_TRAIN_BATCHES + ("test_batch", "batches.meta")
CHUNK_BYTES = 1 << 20
"""Bytes read at once when hashing or downloading."""


class DatasetFileError(ValueError):
    """A data file is corrupt, truncated or not what its name says; the message names the file."""


def check_name(name) -> str:
    """The canonical name (``"fashion-mnist"`` is accepted for ``"fashion_mnist"``)."""
    canonical = name.replace("-", "_").lower() if isinstance(name, str) else None
    if canonical not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return canonical


# --------------------------------------------------------------------------- checksums


def sha256(path, *, decompress: bool = False) -> str:
    """Hex SHA-256 of the file at ``path``, or of its gzip-decompressed content if ``decompress``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    digest = hashlib.sha256()
    with _gzip_errors(path):
        with (gzip.open(path, "rb") if decompress else open(path, "rb")) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path, expected: str, *, decompress: bool = False) -> None:
    """Raise [`DatasetFileError`][infinite_width.datasets.DatasetFileError] naming ``path`` unless its SHA-256 is ``expected``.

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


def data_folder(data_dir, name: str, create: bool = False) -> Path:
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


def cifar_train_batches(folder: Path) -> Sequence[Path]:
    """The CIFAR-10 training batch files present in ``folder`` (any subset of the five)."""
    return [folder / batch for batch in CIFAR10_TRAIN_BATCHES if (folder / batch).is_file()]


def is_present(name: str, root: Path) -> bool:
    """Whether the files of data set ``name`` are in the data folder ``root`` (looked for, not validated)."""
    folder = root / FOLDERS[name]
    if name == "cifar10":
        return (folder / "test_batch").is_file() and bool(cifar_train_batches(folder))
    stems = [stem for pair in IDX_SPLITS.values() for stem in pair]
    return all(_find_idx(folder, stem) is not None for stem in stems)


def available(data_dir=None) -> Tuple[str, ...]:
    """Names of the data sets that can be loaded: ``"digits"`` always, the others if their files are present.

    ``data_dir`` (or ``INFINITE_WIDTH_DATA``) is the data folder; with neither
    only ``("digits",)`` is available. Files are looked for, not validated.
    """
    if data_dir is None and not os.environ.get(DATA_ENV_VAR):
        return ("digits",)
    root = data_folder(data_dir, "available")
    return ("digits",) + tuple(name for name in DATASETS[1:] if is_present(name, root))


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


def read_idx_dataset(name: str, root: Path):
    """``(x_train, labels_train, x_test, labels_test)`` of MNIST or Fashion-MNIST: uint8 (N, 28, 28, 1) images."""
    folder = root / FOLDERS[name]
    image_shape = IMAGE_SHAPES[name][:2]
    arrays = []
    for images_stem, labels_stem in IDX_SPLITS.values():
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


def read_cifar10(root: Path):
    """``(x_train, labels_train, x_test, labels_test)`` of CIFAR-10: uint8 (N, 32, 32, 3) images."""
    folder = root / FOLDERS["cifar10"]
    batches = cifar_train_batches(folder)
    if not batches:
        raise FileNotFoundError(
            f"{folder}: missing batch file: none of the training batches {', '.join(CIFAR10_TRAIN_BATCHES)} is there"
        )
    train = [_read_cifar_batch(path) for path in batches]
    x_test, labels_test = _read_cifar_batch(folder / "test_batch")
    return (np.concatenate([x for x, _ in train]), np.concatenate([l for _, l in train]), x_test, labels_test)
