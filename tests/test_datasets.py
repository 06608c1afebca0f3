"""Data loaders, checked against the real files in ../shared/datasets and an independent decoding.

Corrupt-file tests use small synthetic files in tmp_path; download tests serve
files from file:// URLs (no network).
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from infinite_width import datasets as D
from infinite_width.datasets import downloading

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic=None) -> bytes:
    """An idx file of unsigned bytes, written independently of the loader."""
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_fake_idx_folder(folder: Path, n_train=20, n_test=10, compress=True, seed=0):
    """A small MNIST-layout folder of random images; labels cycle through 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        contents[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        contents[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(np.arange(n) % 10)
    for stem, content in contents.items():
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return contents


def cifar_batch_bytes(data, labels) -> bytes:
    return pickle.dumps({b"batch_label": b"fake", b"labels": list(labels), b"data": data}, protocol=2)


def write_fake_cifar_folder(folder: Path, batches=("data_batch_1",), n=5, seed=0):
    """CIFAR-10 python batches of n random images each; returns {file name: (data, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in batches + ("test_batch",):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        (folder / name).write_bytes(cifar_batch_bytes(data, labels))
        written[name] = (data, labels)
    return written


def decode_idx_gz(path: Path, header_len: int) -> np.ndarray:
    with gzip.open(path, "rb") as stream:
        return np.frombuffer(stream.read(), dtype=np.uint8, offset=header_len)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(D.DATA_ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def mnist_raw(shared_datasets):
    return D.load("mnist", shared_datasets, standardize=False)


@pytest.fixture(scope="module")
def cifar_raw(shared_datasets):
    return D.load("cifar10", shared_datasets, standardize=False, flatten=False)


# --------------------------------------------------------------------------- names and folders


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*digits.*mnist.*fashion_mnist.*cifar10"):
        D.load("svhn")
    with pytest.raises(ValueError, match="unknown dataset"):
        D.download("imagenet")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_file_datasets_need_a_data_folder(no_env, name):
    with pytest.raises(ValueError, match=f"data_dir=.*{D.DATA_ENV_VAR}"):
        D.load(name)
    with pytest.raises(ValueError, match=f"data_dir=.*{D.DATA_ENV_VAR}"):
        D.download(name, progress=False)


def test_digits_has_nothing_to_download(no_env):
    assert D.download("digits") is None
    assert D.load("digits", download=True).n_train == 1437


def test_missing_data_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load("mnist", missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.available(missing)
    with pytest.raises(TypeError, match="data_dir"):
        D.load("mnist", 3)


def test_env_var_points_at_the_data(monkeypatch, shared_datasets):
    monkeypatch.setenv(D.DATA_ENV_VAR, str(shared_datasets))
    from_env = D.load("mnist", n_train=50, n_test=20)
    from_argument = D.load("mnist", shared_datasets, n_train=50, n_test=20)
    np.testing.assert_array_equal(from_env.x_train, from_argument.x_train)
    np.testing.assert_array_equal(from_env.labels_test, from_argument.labels_test)
    assert D.available() == D.DATASETS


def test_available(no_env, shared_datasets, tmp_path):
    assert D.available(shared_datasets) == ("digits", "mnist", "fashion_mnist", "cifar10")
    assert D.available(tmp_path) == ("digits",)
    assert D.available() == ("digits",)
    write_fake_idx_folder(tmp_path / "fashion-mnist", compress=False)
    assert D.available(tmp_path) == ("digits", "fashion_mnist")


# --------------------------------------------------------------------------- digits


def test_digits_needs_no_files_and_has_a_fixed_balanced_split(no_env):
    data = D.load("digits", standardize=False)
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.float32
    assert data.labels_train.dtype == np.int32
    assert data.num_classes == 10 and data.image_shape == (8, 8, 1)
    np.testing.assert_array_equal(np.bincount(data.labels_test), np.full(10, 36))
    # train + test is exactly scikit-learn's digits, pixels scaled from 0..16 to [0, 1]
    reference = load_digits()
    ours = np.concatenate([data.x_train, data.x_test]) * 16
    ours_labels = np.concatenate([data.labels_train, data.labels_test])
    rows = np.column_stack([ours, ours_labels])
    reference_rows = np.column_stack([reference.data, reference.target])
    np.testing.assert_allclose(rows[np.lexsort(rows.T)], reference_rows[np.lexsort(reference_rows.T)], atol=1e-5)
    # the split does not depend on the subset seed
    other_seed = D.load("digits", seed=5, standardize=False)
    np.testing.assert_array_equal(other_seed.x_test, data.x_test)


def test_flatten_is_nhwc_reshape():
    images = D.load("digits", flatten=False)
    flat = D.load("digits")
    assert images.x_train.shape == (1437, 8, 8, 1)
    np.testing.assert_array_equal(flat.x_train, images.x_train.reshape(1437, -1))


def test_targets_one_hot_and_centered():
    plain = D.load("digits", n_train=50, n_test=20)
    centered = D.load("digits", n_train=50, n_test=20, center_targets=True)
    np.testing.assert_array_equal(plain.y_train, np.eye(10, dtype=np.float32)[plain.labels_train])
    np.testing.assert_allclose(centered.y_test, np.eye(10)[centered.labels_test] - 0.1, atol=1e-7)
    np.testing.assert_allclose(centered.y_train.sum(axis=1), 0.0, atol=1e-6)
    assert centered.y_train.dtype == np.float32


def test_arrays_are_read_only():
    data = D.load("digits", n_train=10, n_test=10)
    with pytest.raises(ValueError, match="read-only"):
        data.x_train[0, 0] = 1.0


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST


def test_mnist_matches_an_independent_decoding(mnist_raw, shared_datasets):
    folder = shared_datasets / "mnist"
    assert mnist_raw.x_train.shape == (60000, 784) and mnist_raw.x_test.shape == (10000, 784)
    assert mnist_raw.x_train.dtype == np.float32 and mnist_raw.labels_test.dtype == np.int32
    images = decode_idx_gz(folder / "train-images-idx3-ubyte.gz", 16).reshape(60000, 784)
    np.testing.assert_array_equal(np.rint(mnist_raw.x_train * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(mnist_raw.labels_train, decode_idx_gz(folder / "train-labels-idx1-ubyte.gz", 8))
    np.testing.assert_array_equal(mnist_raw.labels_test, decode_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", 8))
    assert mnist_raw.x_train.min() == 0.0 and mnist_raw.x_train.max() == 1.0
    assert set(np.unique(mnist_raw.labels_test)) == set(range(10))


def test_fashion_mnist_images_and_class_names(shared_datasets):
    data = D.load("fashion-mnist", shared_datasets, flatten=False, standardize=False, n_test=100)
    folder = shared_datasets / "fashion-mnist"
    assert data.name == "fashion_mnist"
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (100, 28, 28, 1)
    np.testing.assert_array_equal(data.labels_train, decode_idx_gz(folder / "train-labels-idx1-ubyte.gz", 8))
    first = decode_idx_gz(folder / "train-images-idx3-ubyte.gz", 16)[:784].reshape(28, 28)
    np.testing.assert_array_equal(np.rint(data.x_train[0, :, :, 0] * 255), first)
    assert data.class_names[9] == "Ankle boot" and len(data.class_names) == 10


def test_checksums_match_SHA256SUMS(shared_datasets):
    lines = (shared_datasets / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 11
    for line in lines:
        expected, relative = line.split()[:2]
        decompress = "(decompressed content)" in line
        path = shared_datasets / relative
        D.verify_sha256(path, expected, decompress=decompress)
        assert D.sha256(path, decompress=decompress) == expected
    # and the table built into the downloader agrees with the shared files
    for name, folder in (("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")):
        for stem, expected in downloading._IDX_SHA256[name].items():
            assert f"{expected}  {folder}/{stem}.gz" in "\n".join(lines)


def test_checksum_mismatch_raises(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"infinite width")
    good = hashlib.sha256(b"infinite width").hexdigest()
    D.verify_sha256(path, good)
    D.verify_sha256(path, good.upper())
    with pytest.raises(D.DatasetFileError, match=r"file\.bin: checksum mismatch"):
        D.verify_sha256(path, hashlib.sha256(b"finite width").hexdigest())
    compressed = tmp_path / "file.bin.gz"
    compressed.write_bytes(gzip.compress(b"infinite width"))
    D.verify_sha256(compressed, good, decompress=True)
    with pytest.raises(D.DatasetFileError, match=r"file\.bin\.gz: checksum mismatch: SHA-256 of its content"):
        D.verify_sha256(compressed, good)
    with pytest.raises(D.DatasetFileError, match=r"file\.bin\.gz: checksum mismatch: SHA-256 of its decompressed"):
        D.verify_sha256(compressed, hashlib.sha256(b"finite width").hexdigest(), decompress=True)
    with pytest.raises(D.DatasetFileError, match=r"file\.bin: not a valid gzip"):
        D.verify_sha256(path, good, decompress=True)
    with pytest.raises(ValueError, match="64"):
        D.verify_sha256(path, "abc")
    with pytest.raises(FileNotFoundError, match="absent"):
        D.sha256(tmp_path / "absent")


def test_uncompressed_idx_files_are_read(tmp_path):
    write_fake_idx_folder(tmp_path / "gz" / "mnist", seed=1)
    write_fake_idx_folder(tmp_path / "raw" / "mnist", seed=1, compress=False)
    from_gz = D.load("mnist", tmp_path / "gz", standardize=False)
    from_raw = D.load("mnist", tmp_path / "raw", standardize=False)
    np.testing.assert_array_equal(from_gz.x_train, from_raw.x_train)
    assert from_gz.x_train.shape == (20, 784) and from_gz.x_test.shape == (10, 784)


def _truncate_gzip(content):
    return gzip.compress(content)[: len(gzip.compress(content)) // 2]


IDX_CORRUPTIONS = {
    # name: (file stem, bytes to write given the valid content, error pattern)
    "wrong magic": ("train-images-idx3-ubyte", lambda c: gzip.compress(b"\x00\x00\x08\x01" + c[4:]), "wrong magic number 0x00000801"),
    "truncated gzip": ("train-images-idx3-ubyte", _truncate_gzip, "truncated gzip"),
    "not gzip": ("t10k-labels-idx1-ubyte", lambda c: b"this is not gzip data", "not a valid gzip"),
    "truncated content": ("t10k-images-idx3-ubyte", lambda c: gzip.compress(c[:-100]), r"wrong size \(truncated\)"),
    "trailing bytes": ("train-labels-idx1-ubyte", lambda c: gzip.compress(c + b"\x00"), r"wrong size \(trailing bytes\)"),
    "short header": ("train-labels-idx1-ubyte", lambda c: gzip.compress(c[:5]), "shorter than the 8-byte idx header"),
    "wrong image shape": (
        "train-images-idx3-ubyte",
        lambda c: gzip.compress(idx_bytes(np.zeros((20, 27, 28), np.uint8))),
        r"wrong item shape \(27, 28\)",
    ),
    "count mismatch": ("train-labels-idx1-ubyte", lambda c: gzip.compress(idx_bytes(np.zeros(19))), "19 labels but .*train-images-idx3-ubyte.gz holds 20 images"),
    "label out of range": ("t10k-labels-idx1-ubyte", lambda c: gzip.compress(idx_bytes(np.full(10, 12))), "label 12 out of range"),
}


@pytest.mark.parametrize("corruption", list(IDX_CORRUPTIONS))
def test_corrupt_idx_file_is_named(tmp_path, corruption):
    stem, corrupt, pattern = IDX_CORRUPTIONS[corruption]
    contents = write_fake_idx_folder(tmp_path / "mnist")
    D.load("mnist", tmp_path)  # valid before the corruption
    (tmp_path / "mnist" / f"{stem}.gz").write_bytes(corrupt(contents[stem]))
    with pytest.raises(D.DatasetFileError, match=f"{stem}.gz.*{pattern}"):
        D.load("mnist", tmp_path)


def _gzip_bomb(content: bytes, gigabytes: int) -> bytes:
    """``content`` then ``gigabytes`` GiB of zeros, as a gzip file of a few MB (gzip members concatenate)."""
    zeros = gzip.compress(bytes(1 << 24), compresslevel=9)  # 16 MiB of zeros in about 16 kB
    return gzip.compress(content) + zeros * (64 * gigabytes)


def test_a_gzip_bomb_is_refused_naming_the_file_without_decompressing_it(tmp_path, monkeypatch):
    """Issue 24: 3-6 GB of zeros compressed to a few MB hung for over 120 s or raised a MemoryError naming nothing."""
    contents = write_fake_idx_folder(tmp_path / "mnist")
    bomb = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(_gzip_bomb(contents["train-images-idx3-ubyte"], 4))
    assert bomb.stat().st_size < 5e6
    read = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, size=-1: read.append(size) or real_read(self, size))
    with pytest.raises(D.DatasetFileError, match=r"train-images-idx3-ubyte.gz: wrong size \(trailing bytes\)"):
        D.load("mnist", tmp_path)
    assert sum(read) < 20 * 784 + 100  # the header, then what it declares and one byte: not 4 GiB
    # a header that claims more images than the official file is refused before its data are read
    bomb.write_bytes(gzip.compress(struct.pack(">IIII", 0x0803, 10**9, 28, 28)) + bomb.read_bytes()[-10**5:])
    with pytest.raises(D.DatasetFileError, match="declares 1000000000 items, more than the 60000 of the official"):
        D.load("mnist", tmp_path)
    # and a checksum is never computed over more than MAX_DECOMPRESSED_BYTES
    monkeypatch.setattr(D.files, "MAX_DECOMPRESSED_BYTES", 1 << 26)
    bomb.write_bytes(_gzip_bomb(b"", 1))
    with pytest.raises(D.DatasetFileError, match="decompresses to more than 67108864 bytes"):
        D.verify_sha256(bomb, "0" * 64, decompress=True)


def test_missing_idx_file_is_named(tmp_path):
    write_fake_idx_folder(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz: missing file"):
        D.load("fashion_mnist", tmp_path)


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_layout_is_nhwc(cifar_raw, shared_datasets):
    assert cifar_raw.x_train.shape == (10000, 32, 32, 3) and cifar_raw.x_test.shape == (10000, 32, 32, 3)
    assert cifar_raw.class_names[:2] == ("airplane", "automobile")
    with open(shared_datasets / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(cifar_raw.labels_train, batch[b"labels"])
    # pixel (n, h, w, c) is entry c*1024 + h*32 + w of the channel-major row n
    rng = np.random.default_rng(0)
    n, h, w, c = (rng.integers(0, size, 2000) for size in (10000, 32, 32, 3))
    expected = batch[b"data"][n, c * 1024 + h * 32 + w]
    np.testing.assert_array_equal(np.rint(cifar_raw.x_train[n, h, w, c] * 255), expected)
    assert not np.array_equal(cifar_raw.x_train[:, :, :, 0], cifar_raw.x_train[:, :, :, 1])


def test_cifar_accepts_any_subset_of_training_batches(tmp_path):
    written = write_fake_cifar_folder(tmp_path / "cifar-10-batches-py", batches=("data_batch_2", "data_batch_4"))
    data = D.load("cifar10", tmp_path, standardize=False)
    assert data.x_train.shape == (10, 3072) and data.x_test.shape == (5, 3072)
    expected_labels = np.concatenate([written["data_batch_2"][1], written["data_batch_4"][1]])
    np.testing.assert_array_equal(data.labels_train, expected_labels)
    first = written["data_batch_2"][0][0].reshape(3, 32, 32)  # channel-major
    np.testing.assert_array_equal(np.rint(data.x_train[0].reshape(32, 32, 3) * 255), first.transpose(1, 2, 0))
    assert "cifar10" in D.available(tmp_path)


def test_cifar_missing_batches_are_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar_folder(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch: missing batch file"):
        D.load("cifar10", tmp_path)
    write_fake_cifar_folder(folder)
    (folder / "data_batch_1").unlink()
    with pytest.raises(FileNotFoundError, match="missing batch file.*data_batch_1, data_batch_2"):
        D.load("cifar10", tmp_path)


def _pickle_with_a_function(valid):
    return pickle.dumps({b"data": os.getcwd, b"labels": []}, protocol=2)


CIFAR_CORRUPTIONS = {
    "garbage": (lambda valid: b"not a pickle at all", "bad pickle"),
    "truncated": (lambda valid: valid[: len(valid) // 2], "truncated"),
    "code in pickle": (_pickle_with_a_function, "refusing to load"),
    "not a dict": (lambda valid: pickle.dumps([1, 2, 3]), "expected a dict"),
    "wrong data shape": (lambda valid: cifar_batch_bytes(np.zeros((5, 100), np.uint8), range(5)), "N x 3072 uint8"),
    "labels count": (lambda valid: cifar_batch_bytes(np.zeros((5, 3072), np.uint8), range(4)), "must be 5 integers"),
    "label out of range": (lambda valid: cifar_batch_bytes(np.zeros((5, 3072), np.uint8), [0, 1, 2, 3, 10]), "label 10 out of range"),
}


@pytest.mark.parametrize("corruption", list(CIFAR_CORRUPTIONS))
def test_corrupt_cifar_batch_is_named(tmp_path, corruption):
    corrupt, pattern = CIFAR_CORRUPTIONS[corruption]
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar_folder(folder)
    valid = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(corrupt(valid))
    with pytest.raises(D.DatasetFileError, match=f"data_batch_1: .*{pattern}"):
        D.load("cifar10", tmp_path)


# --------------------------------------------------------------------------- subsets, classes, standardization


def _row_labels(data):
    """Map each training image (as bytes) to its label."""
    return {row.tobytes(): label for row, label in zip(data.x_train, data.labels_train)}


def test_balanced_subsets_are_seeded(mnist_raw, shared_datasets):
    subset = D.load("mnist", shared_datasets, n_train=200, n_test=100, seed=3, standardize=False)
    np.testing.assert_array_equal(np.bincount(subset.labels_train), np.full(10, 20))
    np.testing.assert_array_equal(np.bincount(subset.labels_test), np.full(10, 10))
    # every image keeps its own label
    full = _row_labels(mnist_raw)
    assert all(full[row.tobytes()] == label for row, label in zip(subset.x_train, subset.labels_train))
    assert len({row.tobytes() for row in subset.x_train}) == 200  # no repeats
    assert not np.array_equal(subset.labels_train[:20], np.sort(subset.labels_train[:20]))  # shuffled
    again = D.load("mnist", shared_datasets, n_train=200, n_test=100, seed=3, standardize=False)
    np.testing.assert_array_equal(again.x_train, subset.x_train)
    np.testing.assert_array_equal(again.x_test, subset.x_test)
    other = D.load("mnist", shared_datasets, n_train=200, n_test=100, seed=4, standardize=False)
    assert not np.array_equal(other.x_train, subset.x_train)
    assert not np.array_equal(other.x_test, subset.x_test)


@pytest.mark.parametrize("n_train", [0, -10, True, 2.5, "100"])
def test_subset_sizes_are_checked(n_train):
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        D.load("digits", n_train=n_train)


def test_subset_size_errors_explain():
    with pytest.raises(ValueError, match="n_train=105 must be a multiple of the number of classes 10"):
        D.load("digits", n_train=105)
    with pytest.raises(ValueError, match="37 examples of class '0' but the test set has only 36"):
        D.load("digits", n_test=370)
    with pytest.raises(ValueError, match="seed"):
        D.load("digits", seed=-1)


def test_class_selection(mnist_raw, shared_datasets):
    pair = D.load("mnist", shared_datasets, classes=(5, 3), standardize=False)
    assert pair.num_classes == 2 and pair.classes == (5, 3) and pair.class_names == ("5", "3")
    keep = np.isin(mnist_raw.labels_train, (3, 5))
    np.testing.assert_array_equal(pair.x_train, mnist_raw.x_train[keep])
    np.testing.assert_array_equal(pair.labels_train, (mnist_raw.labels_train[keep] == 3).astype(np.int32))
    assert pair.y_train.shape == (int(keep.sum()), 2)
    binary = D.load("mnist", shared_datasets, classes=(0, 1), n_train=40, n_test=20)
    np.testing.assert_array_equal(np.bincount(binary.labels_train), [20, 20])


@pytest.mark.parametrize(
    "classes, error",
    [((1, 1), ValueError), ((0, 10), ValueError), ((3,), ValueError), ((0.5, 1), ValueError), ("01", TypeError), (3, TypeError)],
)
def test_bad_classes_are_rejected(classes, error):
    with pytest.raises(error, match="classes"):
        D.load("digits", classes=classes)


@pytest.mark.parametrize("how, axes", [("channel", (0, 1, 2)), ("global", None)])
def test_standardization_uses_training_statistics(shared_datasets, how, axes):
    common = dict(n_train=500, n_test=100, seed=1, flatten=False)
    raw = D.load("cifar10", shared_datasets, standardize=False, **common)
    standardized = D.load("cifar10", shared_datasets, standardize=how, **common)
    mean = raw.x_train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = raw.x_train.astype(np.float64).std(axis=axes, keepdims=True)
    np.testing.assert_allclose(standardized.x_train, (raw.x_train - mean) / std, atol=2e-5)
    np.testing.assert_allclose(standardized.x_test, (raw.x_test - mean) / std, atol=2e-5)
    np.testing.assert_allclose(standardized.x_train.mean(axis=axes, dtype=np.float64), 0.0, atol=1e-5)
    np.testing.assert_allclose(standardized.x_train.std(axis=axes, dtype=np.float64), 1.0, atol=1e-5)
    assert abs(standardized.x_test.mean()) > 1e-3  # test statistics were not used


def test_feature_standardization_and_default():
    raw = D.load("digits", standardize=False, n_train=200, seed=2)
    per_feature = D.load("digits", standardize="feature", n_train=200, seed=2)
    mean, std = raw.x_train.mean(axis=0, dtype=np.float64), raw.x_train.std(axis=0, dtype=np.float64)
    constant = std == 0
    assert constant.any()  # digits has always-blank corner pixels
    expected = (raw.x_train - mean)[:, ~constant] / std[~constant]
    np.testing.assert_allclose(per_feature.x_train[:, ~constant], expected, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(per_feature.x_test[:, constant], (raw.x_test - mean)[:, constant], atol=1e-6)
    np.testing.assert_allclose(per_feature.x_train[:, ~constant].std(axis=0, dtype=np.float64), 1.0, atol=1e-5)
    default = D.load("digits", n_train=200, seed=2)
    channel = D.load("digits", standardize="channel", n_train=200, seed=2)
    np.testing.assert_array_equal(default.x_train, channel.x_train)
    with pytest.raises(ValueError, match="unknown standardize='pixel'"):
        D.load("digits", standardize="pixel")


# --------------------------------------------------------------------------- download (file:// URLs, no network)


def test_download_idx_verifies_and_places_files(monkeypatch, tmp_path, shared_datasets):
    monkeypatch.setitem(downloading._IDX_MIRRORS, "mnist", ((shared_datasets / "mnist").as_uri() + "/",))
    target = tmp_path / "data"
    folder = D.download("mnist", target, progress=False)
    assert folder == target / "mnist"
    for stem in IDX_STEMS:
        assert (folder / f"{stem}.gz").read_bytes() == (shared_datasets / "mnist" / f"{stem}.gz").read_bytes()
    assert not [p for p in folder.iterdir() if not p.name.endswith(".gz")]  # no scratch left
    before = (folder / "train-images-idx3-ubyte.gz").stat().st_mtime_ns
    D.download("mnist", target, progress=False)  # verified files are kept
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_mtime_ns == before


def test_download_rejects_a_file_with_the_wrong_checksum(monkeypatch, tmp_path):
    source = tmp_path / "mirror"
    write_fake_idx_folder(source)
    monkeypatch.setitem(downloading._IDX_MIRRORS, "fashion_mnist", (source.as_uri() + "/",))
    with pytest.raises(D.DatasetFileError, match="train-images-idx3-ubyte.gz downloaded from .* not the official file"):
        D.download("fashion_mnist", tmp_path / "data", progress=False)
    assert list((tmp_path / "data" / "fashion-mnist").iterdir()) == []
    monkeypatch.setitem(downloading._IDX_MIRRORS, "fashion_mnist", ((tmp_path / "gone").as_uri() + "/",))
    with pytest.raises(OSError, match="could not download train-images-idx3-ubyte.gz"):
        D.download("fashion_mnist", tmp_path / "data", progress=False)


def test_download_cifar_extracts_only_the_batches(monkeypatch, tmp_path):
    staged = write_fake_cifar_folder(tmp_path / "stage" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in staged:
            tar.add(tmp_path / "stage" / "cifar-10-batches-py" / name, arcname=f"cifar-10-batches-py/{name}")
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    monkeypatch.setattr(downloading, "_CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(downloading, "_CIFAR10_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    data = D.load("cifar10", tmp_path / "data", download=True, standardize=False)  # downloads what is missing
    np.testing.assert_array_equal(data.labels_test, staged["test_batch"][1])
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == ["cifar-10-batches-py", "data_batch_1", "test_batch"]
    assert not (tmp_path / "evil.txt").exists()
    monkeypatch.setattr(downloading, "_CIFAR10_SHA256", "0" * 64)
    with pytest.raises(D.DatasetFileError, match="not the official file"):
        D.download("cifar10", tmp_path / "other", progress=False)
