"""Average pooling of images, the experiments' way to make conv kernels affordable on a CPU.

The closed-form CNN-GP and CNTK of a network with global average pooling
cost the square of the pixel count per pair of images (every pair of
positions), so the experiments run conv nets on images average-pooled by a
stated factor (CIFAR-10 32x32 -> 8x8 by 4, MNIST 28x28 -> 7x7 by 4). Pooling
happens after `infinite_width.datasets.load` standardized the images (per
channel, training statistics): it averages blocks of standardized pixels, so
every channel keeps mean zero.
"""

from __future__ import annotations

import numpy as np

from infinite_width._src.checks import check_int
from infinite_width.problem import Problem

__all__ = ["pool_images", "pooled_problem"]


def pool_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool NHWC images (N, H, W, C) by ``factor`` in each spatial direction.

    Args:
      x: (N, H, W, C) images.
      factor: the pooling factor (H and W divisible by it).

    Returns:
      (N, H / factor, W / factor, C) images of the same dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"pool_images needs NHWC images (N, H, W, C), got shape {x.shape}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"images of {h}x{w} pixels cannot be pooled by {factor}")
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4)).astype(x.dtype)


def pooled_problem(data, factor: int) -> Problem:
    """The MSE problem of a data set loaded with ``flatten=False``, its images average-pooled by ``factor``.

    Args:
      data: an `infinite_width.datasets.Dataset` with NHWC images.
      factor: the pooling factor (1: the images as they are).
    """
    factor = check_int("factor", factor, 1)
    pool = lambda x: pool_images(np.asarray(x), factor)  # noqa: E731
    name = data.name if factor == 1 else f"{data.name} pooled x{factor}"
    return Problem(pool(data.x_train), data.y_train, pool(data.x_test), data.y_test, name=name)
