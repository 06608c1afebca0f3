"""The MNIST / Adam setup shared by the Adam-like limit's benchmarks (``bench_adam_limit*.py``).

Every one of them models the same problem: MNIST (standardized, one-hot MSE
targets), ``mlp(2, "relu", sqrt 2, 0.1, 10)`` and Adam(lr 0.01, b1 0.9, b2
0.99), with sizes of its own. This module holds that problem once: the
network and the optimizer, the command-line options they share, the data,
and the header and the JSON file every result is written with.

Scripts run from the repository root (``python benchmarks/<script>.py``), so
``benchmarks/`` is on the path and ``import adam_limit_common`` works.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform

import jax
import numpy as np

import infinite_width as iw
from infinite_width import datasets, optim

#: How the results describe the network of `network()`.
ARCH_DESCRIPTION = "mlp(2, relu, sqrt 2, 0.1, 10)"

#: The command-line options a script may share (``--n-train`` ...), with their types.
SIZE_OPTIONS = {"n_train": int, "n_test": int, "samples": int, "replicas": int, "steps": int, "batch_size": int}


def network() -> iw.Architecture:
    """The benchmarks' network: 2 hidden ReLU layers, W_std sqrt 2, b_std 0.1, 10 outputs."""
    return iw.mlp(2, "relu", 2**0.5, 0.1, 10)


def adam() -> optim.Optimizer:
    """The benchmarks' optimizer: Adam(lr 0.01, b1 0.9, b2 0.99)."""
    return optim.adam(0.01, b1=0.9, b2=0.99)


def parser(description: str, **sizes) -> argparse.ArgumentParser:
    """An argument parser with ``--data-dir`` and ``--out`` (default ``docs``) and one option per size given.

    Args:
      description: the script's one-line description (``--help``).
      **sizes: defaults of the shared size options to add, by name (keys of
        `SIZE_OPTIONS`: ``n_train=2000`` adds ``--n-train``, default 2000);
        ``batch_size=None`` adds ``--batch-size`` with full batch as its default.

    Returns:
      The parser; scripts add their own options to it.

    Raises:
      ValueError: a size that is not one of `SIZE_OPTIONS`.
    """
    unknown = sorted(set(sizes) - set(SIZE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown size options {unknown}; expected some of {sorted(SIZE_OPTIONS)}")
    result = argparse.ArgumentParser(description=description)
    for name, default in sizes.items():
        result.add_argument("--" + name.replace("_", "-"), type=SIZE_OPTIONS[name], default=default)
    result.add_argument("--data-dir", default=os.environ.get("INFINITE_WIDTH_DATA", "../shared/datasets"),
                        help="folder holding mnist/ (default ../shared/datasets or $INFINITE_WIDTH_DATA)")
    result.add_argument("--out", default="docs", help="folder for the results (default docs/)")
    return result


@dataclasses.dataclass(frozen=True)
class Setup:
    """A benchmark's problem: the data, the network and the optimizer.

    Attributes:
      data: the MNIST subset (``x_train`` (N, 784), ``y_train`` (N, 10), ``x_test``, ``y_test``).
      arch: `network`'s architecture.
      optimizer: `adam`'s optimizer.
    """

    data: datasets.Dataset
    arch: iw.Architecture
    optimizer: optim.Optimizer

    @property
    def x_all(self) -> np.ndarray:
        """(N + Nt, 784) training rows, then test rows (the engine's point order)."""
        return np.concatenate([self.data.x_train, self.data.x_test])


def setup(n_train: int, n_test: int, data_dir: str) -> Setup:
    """The first ``n_train`` / ``n_test`` MNIST points (``seed=0``) with the shared network and optimizer.

    Args:
      n_train: training points.
      n_test: test points.
      data_dir: folder holding ``mnist/``.

    Returns:
      The `Setup`.
    """
    data = datasets.load("mnist", data_dir, n_train=n_train, n_test=n_test, seed=0)
    return Setup(data, network(), adam())


def metadata() -> dict:
    """What every result records about its run: date, jax version, machine and load average."""
    return dict(date=datetime.date.today().isoformat(), jax=jax.__version__,
                machine=f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
                load_average=os.getloadavg())


def described(args: argparse.Namespace, optimizer: optim.Optimizer, **extra) -> dict:
    """The configuration a result records: the parsed options, the network, the optimizer and ``extra``.

    Args:
      args: the parsed command line.
      optimizer: the optimizer that was run.
      **extra: further entries (for example the recorded steps).

    Returns:
      A JSON-ready dict.
    """
    return vars(args) | dict(arch=ARCH_DESCRIPTION, optimizer=optimizer.describe()) | extra


def write_json(summary: dict, out: str, name: str) -> str:
    """Write ``summary`` as ``<out>/<name>`` (indented JSON, the folder made if needed).

    Args:
      summary: JSON-ready results.
      out: the output folder.
      name: the file name.

    Returns:
      The path written.
    """
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    with open(path + ".tmp", "w") as handle:
        json.dump(summary, handle, indent=2)
    os.replace(path + ".tmp", path)
    return path
