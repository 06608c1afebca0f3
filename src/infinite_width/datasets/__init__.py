"""Real image data sets: scikit-learn's digits, MNIST, Fashion-MNIST and CIFAR-10.

One entry point, [`load`][infinite_width.datasets.load], returns a frozen [`Dataset`][infinite_width.datasets.Dataset]
of float32 arrays ready for kernels and networks: inputs flattened to (N, d) or kept as
NHWC images (N, H, W, C), one-hot targets (N, k) and integer labels (N,).

Where the files are. ``digits`` ships inside scikit-learn and needs no files
(it is the default for a first run). The others are read from a data folder,
given as ``data_dir=`` or by the environment variable ``INFINITE_WIDTH_DATA``,
in the standard layout:

```text
<data_dir>/mnist/train-images-idx3-ubyte.gz          (and train-labels-idx1-ubyte.gz,
<data_dir>/fashion-mnist/train-images-idx3-ubyte.gz   t10k-images-idx3-ubyte.gz,
                                                       t10k-labels-idx1-ubyte.gz)
<data_dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch
```

idx files may also be stored decompressed (same names without ``.gz``);
a CIFAR-10 folder may hold any subset of the five training batches.
Nothing is cached on disk: the files are decoded on every call (full MNIST in
under a second). [`download`][infinite_width.datasets.download] (or ``load(..., download=True)``) fetches
the official files for users with internet, verifying their SHA-256.
"""

from infinite_width.datasets.downloading import download
from infinite_width.datasets.files import (
    DATA_ENV_VAR,
    DATASETS,
    DatasetFileError,
    available,
    sha256,
    verify_sha256,
)
from infinite_width.datasets.loading import STANDARDIZATIONS, Dataset, load

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "STANDARDIZATIONS",
    "Dataset",
    "DatasetFileError",
    "available",
    "download",
    "load",
    "sha256",
    "verify_sha256",
]
