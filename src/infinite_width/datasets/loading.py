"""Load a data set as float32 arrays: class-balanced subsets, standardization, one-hot targets.

[`load`][infinite_width.datasets.load] is the entry point (re-exported as
[`infinite_width.datasets.load`][]); the files are read by
[`infinite_width.datasets.files`][].
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from infinite_width.datasets.downloading import download as download_files
from infinite_width.datasets.files import (
    IMAGE_SHAPES,
    check_name,
    data_folder,
    is_present,
    read_cifar10,
    read_idx_dataset,
)

__all__ = ["Dataset", "STANDARDIZATIONS", "load"]

STANDARDIZATIONS = ("channel", "feature", "global")

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

# digits has no official split: 36 test images per class (360 in all), drawn once.
_DIGITS_TEST_PER_CLASS = 36
_DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of an image classification data set (arrays are read-only).

    Attributes:
      name: one of `infinite_width.datasets.DATASETS`.
      x_train, x_test: float32 inputs, (N, d) with ``d = H*W*C`` (flattened in
        NHWC order) or (N, H, W, C) images.
      y_train, y_test: float32 targets (N, k): one-hot, or one-hot minus 1/k when
        centered.
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
    root = data_folder(data_dir, name, create=download_missing)
    if download_missing and not is_present(name, root):
        download_files(name, root)
    return read_cifar10(root) if name == "cifar10" else read_idx_dataset(name, root)


# --------------------------------------------------------------------------- subsets and preprocessing


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
    std = np.where(std > 0, std, 1.0).astype(np.float32)  # a constant feature is only centered
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
      n_train: a class-balanced random subset of this many training examples
        (a multiple of the number of classes: equal count per class), in a
        random order drawn from ``seed``. ``None``: every example, in file order.
      n_test: the same for the test examples.
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
        are only centered.
      center_targets: targets ``one_hot - 1/k`` (rows sum to 0), as kernel
        regression papers use; default plain one-hot.
      download: fetch the official files into the data folder first if they
        are missing ([`download`][infinite_width.datasets.download]).

    Returns:
      A [`Dataset`][infinite_width.datasets.Dataset]; ``x_*`` (N, d) or (N, H, W, C), ``y_*`` (N, k),
      ``labels_*`` (N,).
    """
    name = check_name(name)
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
        num_classes=k, image_shape=IMAGE_SHAPES[name], classes=selected, class_names=class_names,
    )
