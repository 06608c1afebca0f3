"""Fetch the official data files, verified by SHA-256, for users with internet.

[`download`][infinite_width.datasets.download] puts MNIST, Fashion-MNIST and CIFAR-10 into the standard
layout of the data folder ([`infinite_width.datasets`][]), trying mirrors in
order and refusing a file whose checksum is not the official one.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

from infinite_width.datasets.files import (
    CHUNK_BYTES,
    CIFAR10_FILES,
    CIFAR10_TRAIN_BATCHES,
    FOLDERS,
    DatasetFileError,
    check_name,
    cifar_train_batches,
    data_folder,
    verify_sha256,
)

__all__ = ["download"]

# idx files (without ".gz") -> SHA-256 of their decompressed content, which is
# what the official releases and every mirror agree on (gzip headers differ).
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


def _fetch(url: str, target: Path, progress: bool) -> None:
    """Stream ``url`` into the file ``target``, with a tqdm bar if ``progress``."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "infinite_width"})
    with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
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
    name = check_name(name)
    if name == "digits":
        return None
    folder = data_folder(data_dir, name, create=True) / FOLDERS[name]
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
    if (folder / "test_batch").is_file() and len(cifar_train_batches(folder)) == len(CIFAR10_TRAIN_BATCHES):
        return
    archive = folder.parent / "cifar-10-python.tar.gz"
    _download_verified([_CIFAR10_URL], archive, _CIFAR10_SHA256, False, progress)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                # Only the known regular files, written by basename: no path from the archive is trusted.
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in CIFAR10_FILES:
                    with tar.extractfile(member) as source, open(folder / base, "wb") as out:
                        shutil.copyfileobj(source, out)
    finally:
        archive.unlink()
