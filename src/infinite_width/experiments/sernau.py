"""Does an Adam-like infinite-width limit close the gap to finite networks? (Sernau 2024, arXiv:2406.18800)

The paper's three claims, tested on one data set and architecture per run, at
several training-set sizes N (learning curves):

1. infinite-width NTK models under-perform traditional finite networks;
2. they still do when feature learning is disabled in the finite networks
   (linearized networks, readout-only training);
3. the gap comes from the optimizer: an Adam-like infinite-width limit erases it.

Regimes: the table `REGIMES` of
[`Regime`][infinite_width.experiments.sernau.Regime] entries (what is
trained, how, with which grid and losses, which claim it serves);
architectures: `ARCHITECTURES`
(``mlp2``; ``conv2``, ``conv3`` and ``myrtle5`` with global average pooling).

Protocol (one for every regime; docs/REPRODUCTION.md states it with its numbers):

* one [`Split`][infinite_width.experiments.validation.Split] per data set:
  ``n_validation`` validation points and ``n_test`` test points drawn from the
  data set's held-out images (the same points for every N and every regime,
  fixed by the seed before anything is trained), beside N training points;
* every trained regime trains on minibatches of ``batch_size`` by epochs and is
  stopped early on validation ([`Budget`][infinite_width.experiments.tuning.Budget]):
  a run of E epochs records the validation and test predictions at its
  epochs; its best epoch (validation accuracy, then loss) must lie at least
  ``patience`` epochs before E, else the run is repeated with 2E epochs (the
  same key gives the same first epochs), up to ``max_epochs``. The test score
  is read at the best validation epoch: no retraining, the test set chooses nothing;
* every grid brackets its optimum ([`Grid`][infinite_width.experiments.tuning.Grid]):
  a best value at an end of the values tried extends the grid by its factor,
  within stated bounds, and the table says where each optimum landed;
* the practitioner's network: cross-entropy, optax Adam with its defaults
  (b1 0.9, b2 0.999, eps 1e-8, one global rate), standard parametrization,
  minibatch 128 (`iw.Finite.traditional`), and MSE beside it for every
  network regime;
* error bars and intervals from one paired bootstrap over the test points
  ([`PairedBootstrap`][infinite_width.experiments.bootstrap.PairedBootstrap]),
  with the seeds' standard error (finite networks) or the Monte Carlo error
  (the Adam-like limit) added to each model's draws.

Claims (per N, with 95 % paired-bootstrap intervals): claim 1 compares the best
traditional network on validation (any loss and width) with the best
NTK-family kernel model on validation; claim 2 the best finite network without
feature learning with that kernel model; claim 3 the fraction of the gap closed
``(acc_limit - acc_NTK descent) / (acc_traditional - acc_NTK descent)`` and the
remaining gap ``traditional - limit``.

Files in ``out_dir``: ``runs/`` (one stored record per training run, a
resumable [`Store`][infinite_width.experiments.store.Store]), ``kernels/``
(the closed-form kernels of architectures that store them), ``plan/`` (the
calibration runs of [`plan`][infinite_width.experiments.sernau.plan]),
``results.json``, ``results.csv``, ``table.md`` and the figures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from infinite_width import datasets, kernels, losses, optim
from infinite_width.architectures import Architecture, conv, mlp, myrtle
from infinite_width.experiments import figures
from infinite_width.experiments.bootstrap import PairedBootstrap
from infinite_width.experiments.images import pooled_problem
from infinite_width.experiments.store import Store
from infinite_width.experiments.tuning import Budget, Grid, best_index, tune
from infinite_width.experiments.validation import Split
from infinite_width.limits import baselines, kernel_dynamics
from infinite_width.predictions import Predictions
from infinite_width.problem import Problem
from infinite_width.workflow import palette
from infinite_width.workflow.methods import AdamLimit, Finite
from infinite_width.workflow.solver import minibatch_order, solve
from infinite_width.workflow.sweeps import job_fingerprint

__all__ = ["Regime", "REGIMES", "ArchitectureEntry", "ARCHITECTURES", "LOSSES", "KINDS", "ROLES", "Config", "Run",
           "load_splits", "run", "summarize", "claims", "plan", "write_results", "read_results", "figures_of",
           "report"]

LOSSES = ("cross_entropy", "mse")
"""Training losses of the network regimes, in table order."""
_LOSS_NAMES = {"cross_entropy": "CE", "mse": "MSE"}
KINDS = ("network", "limit", "kernel_descent", "kernel_ridge")
"""How a regime is computed: finite networks and the Adam-like limit by `iw.solve`; the kernel regimes from the
closed-form kernels, computed once per training set."""
ROLES = ("traditional", "frozen", "kernel", "limit", "control")
"""What a regime stands for in the claims: the practitioner's network; finite networks without feature
learning (claim 2); NTK-family kernel models (claims 1, 2); the Adam-like limit (claim 3); a control."""


# --------------------------------------------------------------------------
# The table of regimes.


@dataclasses.dataclass(frozen=True)
class Regime:
    """One regime of the comparison (an entry of `REGIMES`).

    Attributes:
      name: its name in files and on the command line.
      label: its name in tables and legends.
      kind: how it is computed, one of `KINDS`.
      role: what it stands for in the claims, one of `ROLES`.
      grid: the grid of its setting (see ``setting``).
      setting: what the grid holds: ``"learning rate"``, ``"fraction of the
        largest stable rate"`` (kernel descent: the rate is that fraction of
        `infinite_width.kernels.max_learning_rate` of its kernel on the
        training points) or ``"relative ridge"``.
      losses: the training losses it runs with.
      optimizer: ``"adam"`` or ``"sgd"`` (trained regimes).
      readout_only: train the readout only.
      linearized: train the network's linearization at its initialisation.
      centered: train ``f - f_0`` (the finite network minus its initial function).
      kernel: ``"ntk"`` or ``"nngp"`` (kernel regimes).
      color: its colour in figures.
    """

    name: str
    label: str
    kind: str
    role: str
    grid: Grid
    setting: str = "learning rate"
    losses: Tuple[str, ...] = ("mse",)
    optimizer: Optional[str] = None
    readout_only: bool = False
    linearized: bool = False
    centered: bool = False
    kernel: Optional[str] = None
    color: str = figures.REFERENCE_COLOR

    def __post_init__(self):
        for field, choices in (("kind", KINDS), ("role", ROLES)):
            if getattr(self, field) not in choices:
                raise ValueError(f"regime {self.name!r}: unknown {field} {getattr(self, field)!r}; expected one of "
                                 f"{choices}")
        if not self.losses or set(self.losses) - set(LOSSES):
            raise ValueError(f"regime {self.name!r}: losses must be some of {LOSSES}, got {self.losses}")

    @property
    def finite(self) -> bool:
        """True for finite networks (run at every width, with seeds)."""
        return self.kind == "network"

    @property
    def trained(self) -> bool:
        """True for regimes trained by epochs (all but the ridge baselines)."""
        return self.kind != "kernel_ridge"


# Learning-rate grids: three values, extended by 3x within the bounds. Kernel descent: fractions of the largest
# stable rate, by 2x up to twice it (full-batch descent diverges beyond it). Ridges: by 10x.
ADAM_GRID = Grid((3e-4, 1e-3, 3e-3), factor=3.0, low=1e-5, high=0.1)
SGD_GRID = Grid((0.01, 0.03, 0.1), factor=3.0, low=1e-4, high=10.0)
LIMIT_GRID = Grid((0.01, 0.03, 0.1), factor=3.0, low=1e-4, high=10.0)
FRACTION_GRID = Grid((0.25, 0.5, 1.0), factor=2.0, low=1 / 64, high=2.0)
RIDGE_GRID = Grid((1e-4, 1e-3, 1e-2, 1e-1), factor=10.0, low=1e-8, high=10.0)

_ADAM, _ADAM_READOUT = palette.COLORS[("adam", False)], palette.COLORS[("adam", True)]
REGIMES: Tuple[Regime, ...] = (
    Regime("practitioner", "finite Adam (practitioner)", "network", "traditional", ADAM_GRID, losses=LOSSES,
           optimizer="adam", color=_ADAM),
    Regime("ntk_descent", "NTK descent", "kernel_descent", "kernel", FRACTION_GRID,
           setting="fraction of the largest stable rate", kernel="ntk", color=palette.COLORS[("sgd", False)]),
    Regime("ntk_ridge", "NTK ridge", "kernel_ridge", "kernel", RIDGE_GRID, setting="relative ridge", kernel="ntk",
           color=palette.COLORS["ntk_ridge"]),
    Regime("nngp_ridge", "NNGP posterior (mean)", "kernel_ridge", "kernel", RIDGE_GRID, setting="relative ridge",
           kernel="nngp", color=palette.COLORS["nngp_posterior"]),
    Regime("nngp_descent", "NNGP descent (readout only)", "kernel_descent", "kernel", FRACTION_GRID,
           setting="fraction of the largest stable rate", kernel="nngp", color=palette.COLORS[("sgd", True)]),
    Regime("adam_limit", "Adam-like limit", "limit", "limit", LIMIT_GRID, optimizer="adam", color="#7f0000"),
    Regime("linearized", "finite Adam, linearized", "network", "frozen", ADAM_GRID, losses=LOSSES, optimizer="adam",
           linearized=True, color=palette.COLORS["linearized_adam"]),
    Regime("readout", "finite Adam, readout only", "network", "frozen", ADAM_GRID, losses=LOSSES, optimizer="adam",
           readout_only=True, color=_ADAM_READOUT),
    Regime("linearized_centered", "finite Adam, linearized, centred", "network", "frozen", ADAM_GRID, losses=LOSSES,
           optimizer="adam", linearized=True, centered=True, color="#8c8c00"),
    Regime("readout_centered", "finite Adam, readout only, centred", "network", "frozen", ADAM_GRID, losses=LOSSES,
           optimizer="adam", readout_only=True, centered=True, color="#b35900"),
    Regime("finite_sgd", "finite SGD", "network", "control", SGD_GRID, losses=LOSSES, optimizer="sgd",
           color="#17607f"),
    Regime("adam_limit_readout", "Adam-like limit, readout only", "limit", "control", LIMIT_GRID, optimizer="adam",
           readout_only=True, color="#ff9f5e"),
)
"""Every regime, in the order they run and appear in tables and legends."""
_BY_NAME = {regime.name: regime for regime in REGIMES}


@dataclasses.dataclass(frozen=True)
class ArchitectureEntry:
    """An architecture of the comparison (an entry of `ARCHITECTURES`).

    Attributes:
      name: its name on the command line.
      build: ``out_dim -> Architecture``.
      images: True if it takes NHWC images (conv nets); False for flattened inputs.
      widths: the default widths of its finite networks (channels for conv nets).
      kernel_dtype: precision of its closed-form kernels.
      store_kernels: keep its kernels in ``out_dir/kernels`` (conv nets: hours
        to compute); else they are recomputed in each process (MLPs: seconds).
    """

    name: str
    build: Callable[[int], Architecture]
    images: bool
    widths: Tuple[int, ...]
    kernel_dtype: str = "float64"
    store_kernels: bool = False


_W_STD = math.sqrt(2.0)
ARCHITECTURES: Dict[str, ArchitectureEntry] = {entry.name: entry for entry in (
    ArchitectureEntry("mlp2", lambda k: mlp(2, "relu", _W_STD, 0.1, out_dim=k), images=False, widths=(1024,)),
    ArchitectureEntry("conv2", lambda k: conv(2, "relu", W_std=_W_STD, out_dim=k), images=True, widths=(128,),
                      kernel_dtype="float32", store_kernels=True),
    ArchitectureEntry("conv3", lambda k: conv(3, "relu", W_std=_W_STD, out_dim=k), images=True, widths=(128,),
                      kernel_dtype="float32", store_kernels=True),
    ArchitectureEntry("myrtle5", lambda k: myrtle(5, "relu", W_std=_W_STD, out_dim=k), images=True, widths=(64,),
                      kernel_dtype="float32", store_kernels=True),
)}
"""The architectures: ReLU, weight scale sqrt(2); the conv nets end in global average pooling and a dense readout."""


@dataclasses.dataclass(frozen=True)
class Config:
    """The sizes, regimes and protocol of one run (see the module docstring).

    Attributes:
      arch: a key of `ARCHITECTURES`.
      n_train: the training-set sizes N (the learning curve).
      widths: widths of the finite networks (channels for conv nets).
      seeds: finite networks per width and setting (vectorized; the error bars).
      budget: minibatch size, epochs and patience of every trained regime.
      samples: total Monte Carlo samples of the Adam-like limit (a multiple of ``replicas``).
      replicas: independent replicas of the Adam-like limit (>= 2: its Monte Carlo error).
      regimes: names of the regimes to run (entries of `REGIMES`).
      losses: the training losses to run (each regime runs those of its own it has).
      grids: ``((regime name, Grid), ...)``: grids replacing the table's.
      bootstrap: bootstrap resamples of the error bars and intervals.
      seed: the data's, the split's and every run's seed.
    """

    arch: str = "mlp2"
    n_train: Tuple[int, ...] = (1000, 2000, 5000, 10000)
    widths: Tuple[int, ...] = (1024,)
    seeds: int = 3
    budget: Budget = Budget()
    samples: int = 4096
    replicas: int = 4
    regimes: Tuple[str, ...] = tuple(regime.name for regime in REGIMES)
    losses: Tuple[str, ...] = LOSSES
    grids: Tuple[Tuple[str, Grid], ...] = ()
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {sorted(ARCHITECTURES)}")
        unknown = sorted(set(self.regimes) - set(_BY_NAME))
        if unknown or not self.regimes:
            raise ValueError(f"unknown regimes {unknown}; expected some of {[r.name for r in REGIMES]}")
        if not self.losses or set(self.losses) - set(LOSSES):
            raise ValueError(f"losses must be some of {LOSSES}, got {self.losses}")
        for name in ("n_train", "widths"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {values}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        for name, minimum in (("seeds", 1), ("replicas", 2), ("bootstrap", 10)):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}")
        if self.samples % self.replicas:
            raise ValueError(f"samples ({self.samples}) must be a multiple of replicas ({self.replicas})")
        for name, grid in self.grids:
            if name not in _BY_NAME or not isinstance(grid, Grid):
                raise ValueError(f"grids must pair regime names with Grids, got {name!r}: {grid!r}")

    def regime(self, name: str) -> Regime:
        """The table's regime ``name`` with this run's grid.

        Args:
          name: a regime's name.
        """
        return dataclasses.replace(_BY_NAME[name], **({"grid": dict(self.grids)[name]} if name in dict(self.grids)
                                                      else {}))

    def selected(self) -> List[Regime]:
        """The regimes of this run, in table order."""
        return [self.regime(r.name) for r in REGIMES if r.name in self.regimes]


# --------------------------------------------------------------------------
# Data.


def load_splits(dataset: str, data_dir, n_train: Sequence[int], *, n_validation: int, n_test: int, images: bool,
                pool: int = 1, seed: int = 0) -> Dict[int, Split]:
    """``{N: Split}``: N training images and the same validation and test images for every N.

    Args:
      dataset: a name of `infinite_width.datasets.load` (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"digits"``).
      data_dir: its data folder (None: the environment variable ``INFINITE_WIDTH_DATA``).
      n_train: the training-set sizes (multiples of the number of classes).
      n_validation: validation points (the same for every N).
      n_test: test points (the same for every N).
      images: keep NHWC images (conv nets); False flattens them (MLPs).
      pool: average-pooling factor of the images (1: full resolution).
      seed: the seed of every subset.

    Each training set is a class-balanced random subset of the data set's
    training images; the validation and test points are the first
    ``n_validation`` and the next ``n_test`` of one class-balanced random
    subset of its test images (the same for every N: it depends on ``seed``
    only). Images are standardized per channel with the training subset's
    statistics, then average-pooled by ``pool`` (`infinite_width.experiments.images`),
    then flattened unless ``images``.
    """
    splits = {}
    for n in n_train:
        data = datasets.load(dataset, data_dir, n_train=n, n_test=n_validation + n_test, seed=seed, flatten=False)
        problem = pooled_problem(data, pool)
        if not images:
            problem = Problem(problem.x_train.reshape(n, -1), problem.y_train,
                              problem.x_test.reshape(problem.n_test, -1), problem.y_test, name=problem.name)
        splits[n] = Split.from_test_rows(problem, n_validation)
    return splits


# --------------------------------------------------------------------------
# One training run: a typed entry, computed by its kind.


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of one regime: its loss, width, setting and epochs (an entry of the tuning).

    Attributes:
      regime: the regime.
      n_train: the training-set size.
      loss: the training loss.
      width: the finite width (None at infinite width).
      setting: the grid value (learning rate, fraction of the largest stable rate, or relative ridge).
      epochs: the epochs of the run (None for the ridge baselines).
    """

    regime: Regime
    n_train: int
    loss: str
    width: Optional[int]
    setting: float
    epochs: Optional[int]

    @property
    def entry(self) -> str:
        """The name of the tuned entry the run belongs to (regime, loss, width)."""
        width = "" if self.width is None else f"-w{self.width}"
        return f"n{self.n_train}-{self.regime.name}-{_LOSS_NAMES[self.loss].lower()}{width}"

    @property
    def name(self) -> str:
        """The file name of the run."""
        return self.entry + f"-s{self.setting:.4g}" + ("" if self.epochs is None else f"-e{self.epochs}")


# Rows per stored block of the kernels of architectures that store them.
_KERNEL_ROWS = 500
# The fields of a Regime that change what its runs compute.
_COMPUTED_FIELDS = ("kind", "setting", "optimizer", "readout_only", "linearized", "centered", "kernel")


class _Context:
    """What the runs of one training-set size share: the split, the architecture, the kernels, the options."""

    def __init__(self, split: Split, config: Config, kernel_store: Optional[Store], progress: bool):
        self.split, self.config, self.progress = split, config, progress
        self.entry = ARCHITECTURES[config.arch]
        self.arch = self.entry.build(split.train.out_dim)
        self.data = job_fingerprint({"problem": split.evaluation_problem()})  # the points, hashed once
        self._kernel_store = kernel_store if self.entry.store_kernels else None
        self._kernels: Optional[Dict[str, np.ndarray]] = None
        self._rates: Dict[str, float] = {}

    def job(self, run_: Run) -> dict:
        """What determines a run's result (its fingerprint in the store): not the regime's name, label, colour or
        grid, nor the patience, so that changing those does not recompute finished runs."""
        config, regime = self.config, run_.regime
        return dict(data=self.data, arch=self.arch, loss=run_.loss, width=run_.width, setting=run_.setting,
                    epochs=run_.epochs, seed=config.seed,
                    regime={field: getattr(regime, field) for field in _COMPUTED_FIELDS},
                    recorded=config.budget.recorded_epochs(run_.epochs) if regime.trained else None,
                    batch_size=config.budget.batch_size if regime.trained else None,
                    seeds=config.seeds if regime.finite else None,
                    limit=(config.samples, config.replicas) if regime.kind == "limit" else None)

    def kernels(self) -> Dict[str, np.ndarray]:
        """``{"nngp", "ntk"}``: (N + n_validation + n_test, N) closed-form kernels against the training points.

        Architectures that store their kernels compute them in blocks of rows, each stored as it finishes, so an
        interrupted computation (hours for conv nets) resumes at its last block.
        """
        if self._kernels is None:
            problem = self.split.evaluation_problem()
            x_all = np.concatenate([problem.x_train, problem.x_test])
            batch = min(256, x_all.shape[0]) if self.entry.images else None

            def compute(rows: slice):
                nngp, ntk = kernels.nngp_and_ntk(self.arch, x_all[rows], problem.x_train,
                                                 dtype=self.entry.kernel_dtype, batch_size=batch)
                return {"nngp": np.asarray(nngp), "ntk": np.asarray(ntk)}

            if self._kernel_store is None:
                self._kernels = compute(slice(None))
            else:
                blocks = []
                for start in range(0, x_all.shape[0], _KERNEL_ROWS):
                    rows = slice(start, min(start + _KERNEL_ROWS, x_all.shape[0]))
                    job = dict(data=self.data, arch=self.arch, dtype=self.entry.kernel_dtype, rows=(rows.start,
                                                                                                      rows.stop))
                    blocks.append(self._kernel_store.fetch(f"n{self.split.n_train}-rows{rows.start}-{rows.stop}", job,
                                                           lambda: compute(rows)))
                    print(f"kernels of N = {self.split.n_train}: rows {rows.stop} of {x_all.shape[0]}", flush=True)
                self._kernels = {name: np.concatenate([block[name] for block in blocks]) for name in ("nngp", "ntk")}
        return self._kernels

    def largest_rate(self, kernel: str) -> float:
        """`infinite_width.kernels.max_learning_rate` of the kernel on the training points (computed once)."""
        if kernel not in self._rates:
            n = self.split.n_train
            self._rates[kernel] = kernels.max_learning_rate(self.kernels()[kernel][:n].astype(np.float64),
                                                            self.split.train.out_dim)
        return self._rates[kernel]


def _steps(run_: Run, context: _Context) -> Tuple[int, List[int]]:
    """The steps of a trained run and its recorded steps (at the recorded epochs)."""
    per_epoch = context.config.budget.steps_per_epoch(run_.n_train)
    return run_.epochs * per_epoch, [e * per_epoch for e in context.config.budget.recorded_epochs(run_.epochs)]


def _optimizer(name: str, rate: float) -> optim.Optimizer:
    return {"adam": optim.adam, "sgd": optim.sgd}[name](rate)


def _solved(run_: Run, context: _Context, method) -> Tuple[Predictions, dict]:
    """A network or limit run by `iw.solve` on the split's evaluation problem: its predictions and info."""
    steps, record = _steps(run_, context)
    trajectory = solve(context.split.with_loss(run_.loss).evaluation_problem(), context.arch, method,
                       _optimizer(run_.regime.optimizer, run_.setting), steps=steps,
                       readout_only=run_.regime.readout_only, batch_size=context.config.budget.batch_size,
                       record=record, key=context.config.seed, progress=context.progress)
    predictions = Predictions(steps=trajectory.steps, train=trajectory.train_predictions,
                              test=trajectory.test_predictions, diverged=trajectory.diverged,
                              test_stderr=trajectory.test_stderr)
    return predictions, {"rate": run_.setting}


def _network(run_: Run, context: _Context):
    regime = run_.regime
    method = dataclasses.replace(Finite.traditional(run_.width, seeds=context.config.seeds),
                                 linearized=regime.linearized, centered=regime.centered)
    return _solved(run_, context, method)


def _limit(run_: Run, context: _Context):
    return _solved(run_, context, AdamLimit(samples=context.config.samples, replicas=context.config.replicas))


def _kernel_descent(run_: Run, context: _Context):
    n, kernel = run_.n_train, context.kernels()[run_.regime.kernel]
    rate = float(f"{run_.setting * context.largest_rate(run_.regime.kernel):.6g}")
    steps, record = _steps(run_, context)
    order = minibatch_order(context.config.seed, n, context.config.budget.batch_size, steps)
    predictions = kernel_dynamics.run(kernel[:n], kernel[n:], context.split.train.y_train, optim.sgd(rate), record,
                                      loss=run_.loss, batch_indices=order, progress=context.progress)
    return predictions, {"rate": rate}


def _kernel_ridge(run_: Run, context: _Context):
    n, kernel = run_.n_train, context.kernels()[run_.regime.kernel].astype(np.float64)
    try:
        train, test = baselines.kernel_ridge(kernel[:n], kernel[n:], context.split.train.y_train, ridge=run_.setting)
    except np.linalg.LinAlgError:  # too small a ridge for this kernel: scored as a failed (diverged) setting
        nan = lambda rows: np.full((rows, context.split.train.out_dim), np.nan)  # noqa: E731
        return Predictions.at_infinity(nan(n), nan(kernel.shape[0] - n)), {"ridge": run_.setting, "singular": True}
    return Predictions.at_infinity(train, test), {"ridge": run_.setting}


_RUNNERS = {"network": _network, "limit": _limit, "kernel_descent": _kernel_descent, "kernel_ridge": _kernel_ridge}


def _loss_values(loss: str, predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(...,) losses of (..., n, k) predictions (NaN where they are not finite)."""
    loss_fn = losses.get(loss)
    flat = predictions.reshape((-1,) + predictions.shape[-2:])
    values = np.array([float(loss_fn(p, targets)) for p in flat])
    return values.reshape(predictions.shape[:-2])


def _accuracies(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(...,) accuracies of (..., n, k) predictions; NaN where a prediction is not finite."""
    correct = (np.argmax(predictions, -1) == np.argmax(targets, -1)).mean(-1)
    return np.where(np.all(np.isfinite(predictions), axis=(-2, -1)), correct, np.nan)


def _record(run_: Run, context: _Context) -> dict:
    """Compute a run and keep what the protocol reads: the validation and test curves, the best epoch's test
    predictions (and Monte Carlo standard errors), the wall time."""
    started = time.perf_counter()
    predictions, info = _RUNNERS[run_.regime.kind](run_, context)
    split = context.split
    validation, test = split.parts(predictions.test)  # (S, R, n, k)
    diverged = np.asarray(predictions.diverged, bool)
    curves = {"validation_accuracy": _accuracies(validation, split.y_validation),
              "validation_loss": _loss_values(run_.loss, validation, split.y_validation),
              "test_accuracy": _accuracies(test, split.y_test),
              "test_loss": _loss_values(run_.loss, test, split.y_test)}
    kept = ~diverged
    best = (best_index(curves["validation_accuracy"][kept].mean(0), curves["validation_loss"][kept].mean(0))
            if np.any(kept) else predictions.steps.size - 1)
    per_epoch = context.config.budget.steps_per_epoch(run_.n_train)
    result = {**{name: np.asarray(value, np.float64) for name, value in curves.items()},
              "epochs": predictions.steps // per_epoch if run_.regime.trained else np.array([-1]),
              "diverged": diverged, "best": int(best),
              "test_predictions": np.asarray(test[:, best], np.float32), "info": info,
              "seconds": time.perf_counter() - started, "load": os.getloadavg()[0]}
    if predictions.test_stderr is not None:
        result["test_stderr"] = np.asarray(split.parts(predictions.test_stderr)[1][best], np.float32)
    return result


# --------------------------------------------------------------------------
# Tuning: grids that bracket, runs stopped early.


def _best_point(record: Mapping) -> Tuple[float, float]:
    """(validation accuracy, validation loss) of a record at its best epoch (mean over non-diverged seeds)."""
    kept = ~record["diverged"]
    if not np.any(kept):
        return -math.inf, math.inf
    best = record["best"]
    return (float(np.nanmean(record["validation_accuracy"][kept, best])),
            float(np.nanmean(record["validation_loss"][kept, best])))


def _converged(regime: Regime, n: int, loss: str, width, setting: float, context: _Context, store: Store,
               finished_only: bool) -> Optional[Tuple[Run, dict]]:
    """The run of one setting, repeated with doubled epochs until validation stopped improving (or None)."""
    budget = context.config.budget
    epochs = budget.initial_epochs if regime.trained else None
    while True:
        run_ = Run(regime, n, loss, width, setting, epochs)
        record = store.fetch(run_.name, context.job(run_), lambda: _record(run_, context), finished_only=finished_only)
        if record is None or not regime.trained:
            return None if record is None else (run_, record)
        diverged_everywhere = bool(np.all(record["diverged"]))
        following = None if diverged_everywhere else budget.next_epochs(epochs, int(record["epochs"][record["best"]]))
        if following is None:
            return run_, record
        epochs = following


def _tuned(regime: Regime, n: int, loss: str, width, context: _Context, store: Store, finished_only: bool
           ) -> Optional[dict]:
    """One entry (regime, loss, width) tuned on its grid: the chosen run, its record and what was tried."""
    runs: Dict[float, Tuple[Run, dict]] = {}
    unfinished = []

    def evaluate(setting: float) -> Tuple[float, float]:
        found = _converged(regime, n, loss, width, setting, context, store, finished_only)
        if found is None:
            unfinished.append(setting)
            return -math.inf, math.inf
        runs[setting] = found
        return _best_point(found[1])

    _, best = tune(regime.grid, evaluate)
    if unfinished or best not in runs:
        return None
    run_, record = runs[best]
    tried = {f"{setting:.4g}": dict(zip(("validation_accuracy", "validation_loss"), _best_point(found)),
                                    epochs=tried_run.epochs,
                                    best_epoch=int(found["epochs"][found["best"]]) if regime.trained else None)
             for setting, (tried_run, found) in sorted(runs.items())}
    best_epoch = int(record["epochs"][record["best"]]) if regime.trained else None
    return dict(n_train=n, regime=regime.name, loss=loss, width=width, setting=best, run=run_.name,
                epochs=run_.epochs, best_epoch=best_epoch, tried=tried, record=record,
                landing=regime.grid.landing(list(runs), best),
                bound=_bound_note(regime, list(runs), best),
                stopped_by=context.config.budget.stopped_by(run_.epochs, best_epoch) if regime.trained else None)


def _bound_note(regime: Regime, tried: Sequence[float], best: float) -> str:
    """Which grid bound stopped an extension, if the optimum sits at an end of what was tried."""
    landing = regime.grid.landing(tried, best)
    if landing == "at the upper bound" and regime.grid.extension(tried, best) is None:
        return f"grid bound {regime.grid.high:.3g}"
    if landing == "at the lower bound" and regime.grid.extension(tried, best) is None:
        return f"grid bound {regime.grid.low:.3g}"
    return ""


def _available(regime: Regime, arch: Architecture, config: Config) -> Optional[str]:
    """None if the library can run ``regime`` on ``arch``, else its reason (the method's own check)."""
    if regime.kind == "limit":
        try:
            AdamLimit(samples=config.samples, replicas=config.replicas).check(
                arch, _optimizer("adam", 1e-3), regime.readout_only, config.budget.batch_size)
        except ValueError as error:
            return str(error)
    if regime.kind.startswith("kernel") and not arch.has_closed_form:
        return f"{arch.name} has no closed-form kernel"
    return None


def run(splits: Mapping[int, Split], config: Config, out_dir, *, progress: bool = True,
        finished_only: bool = False) -> Tuple[List[dict], List[str]]:
    """Tune every regime, loss and width of ``config`` at every N of ``splits``; resumable in ``out_dir``.

    Args:
      splits: ``{N: Split}`` ([`load_splits`][infinite_width.experiments.sernau.load_splits]).
      config: the run's sizes, regimes and protocol.
      out_dir: the run's folder (``runs/``, ``kernels/``).
      progress: progress bars of the solves.
      finished_only: compute nothing: the entries whose runs are all stored.

    Returns:
      ``(entries, notes)``: one tuned entry per (N, regime, loss, width) whose
      runs are finished (dicts with ``n_train``, ``regime``, ``loss``, ``width``,
      ``setting``, ``epochs``, ``best_epoch``, ``tried``, ``landing``, ``bound``,
      ``stopped_by`` and the chosen run's ``record``), and the notes printed on
      regimes that did not run (and why).
    """
    store, kernel_store = Store(Path(out_dir, "runs")), Store(Path(out_dir, "kernels"))
    entries, notes = [], []
    for n, split in splits.items():
        context = _Context(split, config, kernel_store, progress)
        print(f"N = {n}: {split.describe()}; {config.arch}", flush=True)
        for regime in config.selected():
            reason = _available(regime, context.arch, config)
            if reason is not None:
                note = f"{regime.name} not run on {config.arch}: {reason}"
                if note not in notes:
                    notes.append(note)
                    print(note, flush=True)
                continue
            for loss in (l for l in regime.losses if l in config.losses):
                for width in (config.widths if regime.finite else (None,)):
                    entry = _tuned(regime, n, loss, width, context, store, finished_only)
                    name = Run(regime, n, loss, width, 0.0, None).entry
                    if entry is None:
                        print(f"not finished yet: {name}", flush=True)
                        continue
                    entries.append(entry)
                    print(f"{name}: {regime.setting} {entry['setting']:.4g} ({entry['landing']}), best epoch "
                          f"{entry['best_epoch']} of {entry['epochs']}, validation accuracy "
                          f"{_best_point(entry['record'])[0]:.4f}", flush=True)
    return entries, notes


# --------------------------------------------------------------------------
# Numbers: error bars, the paired bootstrap, the claims.

_MC_REDRAWS = 64


def _per_point(entry: Mapping, split: Split) -> Tuple[np.ndarray, float, str]:
    """``(correct (Nt,), model_se, what the error counts)`` of a tuned entry at its best epoch.

    ``correct`` is the fraction of the entry's non-diverged seeds correct on
    each test point; ``model_se`` the standard error of its accuracy that
    the test points do not account for: the seeds' spread over sqrt(seeds)
    (finite networks), the Monte Carlo error of the limit's mean predictions
    (their accuracy when redrawn within their standard errors), 0 otherwise.
    """
    record = entry["record"]
    kept = ~record["diverged"] if np.any(~record["diverged"]) else np.ones_like(record["diverged"])
    predictions = record["test_predictions"][kept]  # (S, Nt, k)
    labels = np.argmax(split.y_test, -1)
    correct = (np.argmax(predictions, -1) == labels) & np.all(np.isfinite(predictions), -1)
    seeds = correct.shape[0]
    if "test_stderr" in record:
        rng = np.random.default_rng([entry["n_train"], 7])
        redrawn = predictions[0] + record["test_stderr"] * rng.standard_normal((_MC_REDRAWS,) + predictions.shape[1:])
        se = float(np.std((np.argmax(redrawn, -1) == labels).mean(-1), ddof=1))
        return correct.mean(0), se, "test points and Monte Carlo"
    if seeds > 1:
        return correct.mean(0), float(np.std(correct.mean(-1), ddof=1) / math.sqrt(seeds)), \
            f"test points and {seeds} seeds"
    return correct.mean(0), 0.0, "test points"


def _entry_name(entry: Mapping) -> str:
    width = "" if entry["width"] is None else f"-w{entry['width']}"
    return f"{entry['regime']}-{_LOSS_NAMES[entry['loss']].lower()}{width}"


def _row(entry: Mapping, boot: PairedBootstrap, error: str, config: Config) -> dict:
    regime, record = config.regime(entry["regime"]), entry["record"]
    kept = ~record["diverged"] if np.any(~record["diverged"]) else np.ones_like(record["diverged"])
    name = _entry_name(entry)
    limited = [note for note in (entry["bound"], "max epochs" if entry["stopped_by"] == "max_epochs" else "")
               if note]
    return dict(
        n_train=entry["n_train"], name=name, regime=regime.name, label=regime.label, role=regime.role,
        loss=entry["loss"], width="inf" if entry["width"] is None else entry["width"], setting_kind=regime.setting,
        setting=entry["setting"], rate=record["info"].get("rate"), epochs=entry["epochs"],
        best_epoch=entry["best_epoch"], stopped_by=entry["stopped_by"], landing=entry["landing"],
        tried=entry["tried"], validation_accuracy=_best_point(record)[0],
        test_accuracy=boot.accuracy(name), test_accuracy_err=boot.standard_error(name),
        test_loss=float(np.nanmean(record["test_loss"][kept, record["best"]])), error=error,
        diverged=f"{int(record['diverged'].sum())}/{record['diverged'].size}", limited_by=", ".join(limited),
        wall_time_s=record["seconds"],
    )


def _best(rows: Sequence[dict], keep: Callable[[dict], bool]) -> Optional[dict]:
    """The row with the best validation accuracy among those ``keep`` accepts (None if there is none)."""
    chosen = [row for row in rows if keep(row)]
    return max(chosen, key=lambda row: row["validation_accuracy"]) if chosen else None


def _significance(interval: Sequence[float]) -> str:
    return "positive" if interval[0] > 0 else "negative" if interval[1] < 0 else "zero within the interval"


_VERDICT = {"positive": "supported", "negative": "not supported", "zero within the interval": "inconclusive"}


def claims(rows: Sequence[dict], boot: PairedBootstrap) -> List[dict]:
    """The verdicts on the three claims at one N: dicts with ``claim``, ``verdict``, ``numbers``, ``text``.

    Args:
      rows: the table rows at one N (``name``, ``regime``, ``role``, ``label``,
        ``loss``, ``width``, ``validation_accuracy``).
      boot: the paired bootstrap of those rows' models (by ``name``).

    Differences of test accuracy with their 95 % paired-bootstrap intervals
    (see the module docstring for the models compared). A claim is
    *supported* when its interval lies above 0, *not supported* below 0 (the
    data contradict the paper), *inconclusive* otherwise; claim 3 is supported
    when the limit beats NTK descent and no gap to the traditional network
    remains.
    """
    traditional = _best(rows, lambda r: r["role"] == "traditional")
    kernel = _best(rows, lambda r: r["role"] == "kernel")
    frozen = _best(rows, lambda r: r["role"] == "frozen")
    limit = _best(rows, lambda r: r["role"] == "limit")
    ntk = _best(rows, lambda r: r["regime"] == "ntk_descent")

    def compared(claim: int, a: Optional[dict], b: Optional[dict], supported: str, contradicted: str) -> dict:
        if a is None or b is None:
            return dict(claim=claim, verdict="not run", numbers={},
                        text=f"claim {claim}: not run (a regime it needs did not run)")
        numbers = dict(boot.difference(a["name"], b["name"]), better=a["name"], worse=b["name"])
        sign = _significance(numbers["interval"])
        reading = {"positive": supported, "negative": contradicted}.get(sign, "the difference is not resolved")
        text = (f"claim {claim}: {_VERDICT[sign]}: {_describe(a)} minus {_describe(b)} = {numbers['difference']:+.4f} "
                f"test accuracy (95% CI {numbers['interval'][0]:+.4f} .. {numbers['interval'][1]:+.4f}); {reading}")
        return dict(claim=claim, verdict=_VERDICT[sign], numbers=numbers, text=text)

    out = [compared(1, traditional, kernel, "the kernel model under-performs",
                    "the data contradict the paper: the kernel model is better"),
           compared(2, frozen, kernel, "even without feature learning the finite network is better",
                    "the data contradict the paper: the kernel model beats the frozen-feature network")]
    if None in (traditional, limit, ntk):
        out.append(dict(claim=3, verdict="not run", numbers={}, text="claim 3: not run (a regime it needs did not run)"))
        return out
    t, l, n = traditional["name"], limit["name"], ntk["name"]
    gap, remaining, gain = boot.difference(t, n), boot.difference(t, l), boot.difference(l, n)
    fraction = gain["difference"] / gap["difference"] if gap["difference"] else math.nan
    numbers = dict(fraction_closed=fraction, fraction_interval=list(boot.ratio_interval((l, n), (t, n))), gap=gap,
                   remaining_gap=remaining, limit_minus_ntk=gain, traditional=t, limit=l, ntk=n)
    gap_sign = _significance(gap["interval"])
    if gap_sign != "positive":
        verdict, why = "inconclusive", ("the traditional network is worse than NTK descent here: there is no gap to "
                                        "close" if gap_sign == "negative" else "the gap between the traditional "
                                        "network and NTK descent is not resolved")
    elif _significance(gain["interval"]) != "positive":
        verdict, why = "not supported", "the Adam-like limit does not beat NTK descent"
    elif _significance(remaining["interval"]) == "positive":
        verdict, why = "not supported", "the limit closes part of the gap, not all of it"
    else:
        verdict, why = "supported", "the limit beats NTK descent and no gap to the traditional network remains"
    text = (f"claim 3: {verdict}: fraction of the gap closed {fraction:.2f} (95% CI "
            f"{numbers['fraction_interval'][0]:.2f} .. {numbers['fraction_interval'][1]:.2f}); limit minus NTK descent "
            f"{gain['difference']:+.4f} (95% CI {gain['interval'][0]:+.4f} .. {gain['interval'][1]:+.4f}), "
            f"traditional minus limit {remaining['difference']:+.4f} (95% CI {remaining['interval'][0]:+.4f} .. "
            f"{remaining['interval'][1]:+.4f}); {why}")
    out.append(dict(claim=3, verdict=verdict, numbers=numbers, text=text))
    return out


def _describe(row: Mapping) -> str:
    width = "" if row["width"] == "inf" else f", width {row['width']}"
    return f"{row['label']} ({_LOSS_NAMES[row['loss']]}{width})"


def summarize(entries: Sequence[dict], splits: Mapping[int, Split], config: Config) -> Tuple[List[dict], Dict]:
    """The table rows (one per tuned entry) and ``{N: claims}``, from one paired bootstrap per N.

    Args:
      entries: the tuned entries of [`run`][infinite_width.experiments.sernau.run].
      splits: ``{N: Split}`` they were run on (their test points).
      config: the run's configuration (its regimes, the bootstrap's size and seed).
    """
    rows, verdicts = [], {}
    for n, split in splits.items():
        mine = [entry for entry in entries if entry["n_train"] == n]
        if not mine:
            continue
        scored = {_entry_name(entry): _per_point(entry, split) for entry in mine}
        boot = PairedBootstrap({name: s[0] for name, s in scored.items()}, resamples=config.bootstrap,
                               seed=config.seed, model_se={name: s[1] for name, s in scored.items()})
        at_n = [_row(entry, boot, scored[_entry_name(entry)][2], config) for entry in mine]
        rows += at_n
        verdicts[n] = claims(at_n, boot)
    return rows, verdicts


# --------------------------------------------------------------------------
# Output: results.json / .csv, table.md, figures.

_COLUMNS = ("n_train", "name", "regime", "label", "loss", "width", "setting_kind", "setting", "rate", "landing",
            "epochs", "best_epoch", "stopped_by", "validation_accuracy", "test_accuracy", "test_accuracy_err",
            "test_loss", "error", "diverged", "limited_by", "wall_time_s")


def _table(rows: Sequence[dict], verdicts: Mapping) -> str:
    lines = ["| N | regime | loss | width | setting | optimum | best epoch / epochs | val acc | test acc | test loss "
             "| limited by |", "|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        epochs = "-" if r["epochs"] is None else f"{r['best_epoch']} / {r['epochs']}"
        lines.append(f"| {r['n_train']} | {r['label']} | {_LOSS_NAMES[r['loss']]} | {r['width']} | {r['setting']:.3g} "
                     f"| {r['landing']} | {epochs} | {r['validation_accuracy']:.4f} | {r['test_accuracy']:.4f} ± "
                     f"{r['test_accuracy_err']:.4f} | {r['test_loss']:.4f} | {r['limited_by']} |")
    for n, items in verdicts.items():
        lines += ["", f"N = {n}:"] + [f"- {item['text']}" for item in items]
    return "\n".join(lines) + "\n"


def write_results(out_dir, rows: Sequence[dict], verdicts: Mapping, header: dict) -> str:
    """``results.json`` (header, rows, verdicts), ``results.csv`` and ``table.md`` in ``out_dir``; returns the table.

    Args:
      out_dir: the folder.
      rows: the rows of [`summarize`][infinite_width.experiments.sernau.summarize].
      verdicts: ``{N: claims}`` of the same.
      header: what else ``results.json`` records (title, splits, configuration, notes).
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    Path(out_dir, "results.json").write_text(json.dumps(
        dict(header, rows=list(rows), claims={str(n): v for n, v in verdicts.items()}), indent=1))
    with open(Path(out_dir, "results.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    text = _table(rows, verdicts)
    Path(out_dir, "table.md").write_text(text)
    return text


def read_results(out_dir) -> dict:
    """The ``results.json`` of a finished run (its header, ``rows`` and ``claims``).

    Args:
      out_dir: the run's folder.
    """
    path = Path(out_dir, "results.json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results (run the experiment into {out_dir} first)")
    return json.loads(path.read_text())


def _best_rows(rows: Sequence[dict]) -> List[dict]:
    """One row per (N, regime, loss): the width with the best validation accuracy."""
    best: Dict[tuple, dict] = {}
    for row in rows:
        key = (row["n_train"], row["regime"], row["loss"])
        if key not in best or row["validation_accuracy"] > best[key]["validation_accuracy"]:
            best[key] = row
    return list(best.values())


_LOSS_STYLE = {"cross_entropy": ("-", "o"), "mse": ("--", "s")}


def _loss_handles() -> List[tuple]:
    from matplotlib.lines import Line2D

    return [(Line2D([], [], color=figures.REFERENCE_COLOR, linestyle=style, marker=marker, markersize=4),
             f"{_LOSS_NAMES[loss]} training loss") for loss, (style, marker) in _LOSS_STYLE.items()]


def _regime_handles(names) -> List[tuple]:
    from matplotlib.lines import Line2D

    return [(Line2D([], [], color=regime.color, linewidth=2.0), regime.label) for regime in REGIMES
            if regime.name in names]


def _grid_of(count: int):
    columns = min(count, 3)
    return figures.new_figure(-(-count // columns), columns, panel_size=(4.4, 3.3))


def accuracy_figure(sets: Sequence[Tuple[str, dict]]):
    """Test accuracy of every regime at the largest N of each results set (a panel each), with error bars.

    Args:
      sets: ``[(title, results)]`` with ``results`` as read by
        [`read_results`][infinite_width.experiments.sernau.read_results];
        finite networks at their best width on validation.
    """
    fig, axes = _grid_of(len(sets))
    for ax, (title, results) in zip(axes.flat, sets):
        largest = max(row["n_train"] for row in results["rows"])
        rows = [row for row in _best_rows(results["rows"]) if row["n_train"] == largest]
        order = [r.name for r in REGIMES if any(row["regime"] == r.name for row in rows)]
        for row in rows:
            x = order.index(row["regime"]) + (-0.15 if row["loss"] == "cross_entropy" else 0.15)
            ax.errorbar([x], [row["test_accuracy"]], yerr=[row["test_accuracy_err"]], color=_BY_NAME[row["regime"]].color,
                        marker=_LOSS_STYLE[row["loss"]][1], markersize=5, capsize=3, linestyle="none")
        ax.set_xticks(range(len(order)), [_BY_NAME[name].label for name in order], rotation=45, ha="right",
                      fontsize=7)
        ax.set_title(f"{title}, N = {largest}", fontsize=9)
        ax.set_ylabel("test accuracy")
        ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    _hide_unused(axes, len(sets))
    figures.figure_legend(fig, [], columns=2, extra=_loss_handles())
    return fig


def learning_curve_figure(sets: Sequence[Tuple[str, dict]]):
    """Test accuracy against N of every regime and loss (finite networks at their best width), a panel per set.

    Args:
      sets: ``[(title, results)]`` as for [`accuracy_figure`][infinite_width.experiments.sernau.accuracy_figure].
    """
    fig, axes = _grid_of(len(sets))
    for ax, (title, results) in zip(axes.flat, sets):
        rows = _best_rows(results["rows"])
        for regime in REGIMES:
            for loss, (style, marker) in _LOSS_STYLE.items():
                mine = sorted((r for r in rows if r["regime"] == regime.name and r["loss"] == loss),
                              key=lambda r: r["n_train"])
                if mine:
                    ax.errorbar([r["n_train"] for r in mine], [r["test_accuracy"] for r in mine],
                                yerr=[r["test_accuracy_err"] for r in mine], color=regime.color, linestyle=style,
                                marker=marker, markersize=3, capsize=2, linewidth=1.1)
        _n_axis(ax, sorted({r["n_train"] for r in rows}))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("test accuracy")
    _hide_unused(axes, len(sets))
    shown = {row["regime"] for _, results in sets for row in results["rows"]}
    figures.figure_legend(fig, [], columns=4, extra=_regime_handles(shown) + _loss_handles())
    return fig


# The models and differences each claim's figure shows: (claim, accuracy series, difference series).
_CLAIM_SERIES = {
    1: ([("better", "best traditional network"), ("worse", "best kernel model")],
        [(("better", "worse"), "traditional minus kernel model")]),
    2: ([("better", "best frozen-feature network"), ("worse", "best kernel model")],
        [(("better", "worse"), "frozen-feature network minus kernel model")]),
    3: ([("traditional", "best traditional network"), ("limit", "Adam-like limit"), ("ntk", "NTK descent")],
        [(("limit", "ntk"), "limit minus NTK descent"), (("traditional", "limit"), "traditional minus limit")]),
}


def claim_figure(sets: Sequence[Tuple[str, dict]], claim: int):
    """Claim ``claim`` against N: the compared models' test accuracies (top) and their differences with 95 %
    paired intervals (bottom), a column per results set.

    Args:
      sets: ``[(title, results)]`` as for [`accuracy_figure`][infinite_width.experiments.sernau.accuracy_figure].
      claim: 1, 2 or 3.
    """
    models, differences = _CLAIM_SERIES[claim]
    fig, axes = figures.new_figure(2, len(sets), panel_size=(4.2, 2.8), sharex="col")
    for column, (title, results) in enumerate(sets):
        rows = {(row["n_train"], row["name"]): row for row in results["rows"]}
        verdicts = {int(n): items[claim - 1] for n, items in results["claims"].items()}
        ns = sorted(n for n, item in verdicts.items() if item["numbers"])
        for i, (key, label) in enumerate(models):
            points = [rows[(n, verdicts[n]["numbers"][key])] for n in ns]
            axes[0, column].errorbar(ns, [p["test_accuracy"] for p in points],
                                     yerr=[p["test_accuracy_err"] for p in points], color=figures.color(i),
                                     marker="o", markersize=3, capsize=2, label=label)
        for i, ((a, b), label) in enumerate(differences):
            values = [_difference(verdicts[n]["numbers"], a, b) for n in ns]
            middle = [v["difference"] for v in values]
            axes[1, column].errorbar(ns, middle, yerr=[[m - v["interval"][0] for m, v in zip(middle, values)],
                                                       [v["interval"][1] - m for m, v in zip(middle, values)]],
                                     color=figures.color(len(models) + i), marker="s", markersize=3, capsize=2,
                                     label=label)
        axes[0, column].set_title(f"{title}: claim {claim}", fontsize=9)
        if not ns:
            axes[0, column].text(0.5, 0.5, "not run", ha="center", va="center", transform=axes[0, column].transAxes)
            continue
        axes[1, column].axhline(0.0, color=figures.REFERENCE_COLOR, linewidth=0.8)
        for ax in axes[:, column]:
            _n_axis(ax, ns)
        axes[0, column].set_xlabel("")
        axes[0, column].set_ylabel("test accuracy")
        axes[1, column].set_ylabel("difference (95% CI)")
    figures.figure_legend(fig, axes.flat, columns=3)
    return fig


def _difference(numbers: Mapping, a: str, b: str) -> Mapping:
    """A stored difference of a claim's numbers: ``better - worse`` (claims 1, 2) or claim 3's named ones."""
    if (a, b) == ("better", "worse"):
        return numbers
    return {("limit", "ntk"): numbers.get("limit_minus_ntk"), ("traditional", "limit"): numbers.get("remaining_gap")
            }[(a, b)]


def _n_axis(ax, ns: Sequence[int]):
    ax.set_xscale("log")
    ax.set_xticks(ns, [f"{n:,}" for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("training points N")
    ax.grid(alpha=0.3, linewidth=0.5)


def _hide_unused(axes, used: int):
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)


def figures_of(sets: Sequence[Tuple[str, dict]]) -> Dict[str, object]:
    """Every figure of results sets: ``{file stem: Figure}``.

    Args:
      sets: ``[(title, results)]`` as for [`accuracy_figure`][infinite_width.experiments.sernau.accuracy_figure].
    """
    out = {"sernau_2024_accuracy": accuracy_figure(sets), "sernau_2024_learning_curves": learning_curve_figure(sets)}
    for claim in (1, 2, 3):
        out[f"sernau_2024_claim{claim}"] = claim_figure(sets, claim)
    return out


def report(splits: Mapping[int, Split], config: Config, out_dir, *, title: str, progress: bool = True,
           finished_only: bool = False) -> Tuple[List[dict], Dict]:
    """[`run`][infinite_width.experiments.sernau.run], then the table, the verdicts (printed) and the figures.

    Args:
      splits: as for [`run`][infinite_width.experiments.sernau.run].
      config: as for [`run`][infinite_width.experiments.sernau.run].
      out_dir: as for [`run`][infinite_width.experiments.sernau.run]; the
        results (JSON, CSV, Markdown) and figures (PDF, PNG) go there too.
      title: the data set and architecture, in the figures' titles.
      progress: as for [`run`][infinite_width.experiments.sernau.run].
      finished_only: as for [`run`][infinite_width.experiments.sernau.run].

    Returns:
      ``(rows, {N: claims})`` of [`summarize`][infinite_width.experiments.sernau.summarize].
    """
    entries, notes = run(splits, config, out_dir, progress=progress, finished_only=finished_only)
    rows, verdicts = summarize(entries, splits, config)
    header = dict(title=title, splits={str(n): split.describe() for n, split in splits.items()},
                  config=_jsonable(config), notes=notes)
    print(write_results(out_dir, rows, verdicts, header))
    if rows:
        results = read_results(out_dir)
        paths = [path for stem, figure in figures_of([(title, results)]).items()
                 for path in figures.save(figure, Path(out_dir, stem))]
        print("wrote", ", ".join(str(p) for p in paths))
    return rows, verdicts


def _jsonable(config: Config) -> dict:
    fields = dataclasses.asdict(config)
    fields["grids"] = {name: dataclasses.asdict(grid) for name, grid in config.grids}
    return json.loads(json.dumps(fields, default=str))


# --------------------------------------------------------------------------
# The plan: the jobs of a run and their estimated runtime, from measured costs.

_CALIBRATION_STEPS = 150
# Rows of the block the real kernels are timed on: {images: rows} (conv kernels cost ~1 ms per pair of 8x8 images).
_KERNEL_BLOCK = {False: 256, True: 32}


class _Calibration(_Context):
    """A context whose kernels are random positive semi-definite matrices of the real shapes (the runs' cost does
    not depend on the values), while the real kernels' cost is measured on a block of rows and scaled."""

    def kernels(self):
        if self._kernels is None:
            problem = self.split.evaluation_problem()
            n, rows = problem.n_train, problem.n_train + problem.n_test
            features = np.random.default_rng(0).standard_normal((rows, 64)) / 8.0
            synthetic = features @ features[:n].T + np.eye(rows, n)
            self._kernels = {"nngp": synthetic, "ntk": synthetic}
        return self._kernels

    def kernel_seconds(self) -> float:
        """Seconds to compute both closed-form kernels, from a block of rows (compilation excluded) scaled up, and
        their largest stable rates."""
        started = time.perf_counter()
        for kernel in ("ntk", "nngp"):
            self.largest_rate(kernel)
        rates = time.perf_counter() - started
        problem = self.split.evaluation_problem()
        x_all = np.concatenate([problem.x_train, problem.x_test])
        block = x_all[: min(_KERNEL_BLOCK[self.entry.images], x_all.shape[0])]
        batch = min(256, block.shape[0]) if self.entry.images else None
        compute = lambda: kernels.nngp_and_ntk(self.arch, block, problem.x_train, dtype=self.entry.kernel_dtype,  # noqa: E731
                                               batch_size=batch)
        compute()  # compiles
        started = time.perf_counter()
        compute()
        return rates + (time.perf_counter() - started) * x_all.shape[0] / block.shape[0]


def plan(splits: Mapping[int, Split], config: Config, out_dir, *, progress: bool = False) -> List[dict]:
    """Print the jobs of a run of ``config`` on ``splits`` with an estimated runtime; return one row per entry.

    Args:
      splits: as for [`run`][infinite_width.experiments.sernau.run].
      config: as for [`run`][infinite_width.experiments.sernau.run].
      out_dir: the run's folder (its calibration runs go to ``plan/``).
      progress: progress bars of the calibration solves.

    Each tuned entry (N, regime, loss, width) is calibrated by two short runs
    at the middle of its grid, of one epoch and of enough epochs for 150
    steps (at least 2): their difference gives the cost of an epoch, the rest
    is the fixed cost of a run (compilation, the limit's set-up). The kernel regimes run on random kernels of the real shapes; the
    real kernels' cost is measured on a block of rows (256, or 32 for conv
    nets) and scaled to all rows, plus their largest stable rates. The
    estimate counts the first values of every grid at the initial epochs (the
    least a run costs), and a second figure adds, for every entry, one grid
    extension and one repetition with doubled epochs (typical of the runs
    here). Calibration runs are stored in ``out_dir/plan`` (resumable).
    """
    store = Store(Path(out_dir, "plan"))
    budget, rows = config.budget, []
    for n, split in splits.items():
        context = _Calibration(split, config, None, progress)
        kernel_seconds = None
        # The longer calibration run: at least _CALIBRATION_STEPS steps, so that its epochs, not the compilation,
        # make the difference to the one-epoch run.
        longer = max(2, -(-_CALIBRATION_STEPS // budget.steps_per_epoch(n)))
        print(f"N = {n}: {split.describe()}; {config.arch}", flush=True)
        for regime in config.selected():
            reason = _available(regime, context.arch, config)
            if reason is not None:
                print(f"  {regime.name}: not run ({reason})", flush=True)
                continue
            if regime.kind.startswith("kernel") and kernel_seconds is None:
                job = dict(data=context.data, arch=context.arch, dtype=context.entry.kernel_dtype, what="kernel cost")
                kernel_seconds = store.fetch(f"n{n}-kernels", job, lambda: {"seconds": context.kernel_seconds()})[
                    "seconds"]
                rows.append(dict(n_train=n, name="closed-form kernels (once per N)", jobs=1, fixed_s=kernel_seconds,
                                 epoch_s=0.0, estimate_s=kernel_seconds, typical_s=kernel_seconds))
                print(f"  {rows[-1]['name']}: {kernel_seconds:.0f} s", flush=True)
            if regime.kind == "kernel_descent":
                context.largest_rate(regime.kernel)  # once per N, counted with the kernels, not in the runs
            setting = regime.grid.values[len(regime.grid.values) // 2]
            for loss in (l for l in regime.losses if l in config.losses):
                for width in (config.widths if regime.finite else (None,)):
                    seconds = []
                    for epochs in ((1, longer) if regime.trained else (None,)):
                        run_ = Run(regime, n, loss, width, setting, epochs)
                        record = store.fetch(run_.name, context.job(run_), lambda: _record(run_, context))
                        seconds.append(record["seconds"])
                    epoch_s = max(seconds[-1] - seconds[0], 0.0) / (longer - 1) if regime.trained else 0.0
                    fixed_s = max(seconds[0] - epoch_s, 0.0)
                    jobs = len(regime.grid.values)
                    estimate = jobs * (fixed_s + epoch_s * (budget.initial_epochs if regime.trained else 0))
                    extra_epochs = 2 * budget.initial_epochs if regime.trained else 0
                    typical = (jobs + 1) * (fixed_s + epoch_s * (budget.initial_epochs if regime.trained else 0)) + (
                        fixed_s + epoch_s * extra_epochs if regime.trained else 0.0)
                    rows.append(dict(n_train=n, name=run_.entry, jobs=jobs, fixed_s=fixed_s, epoch_s=epoch_s,
                                     estimate_s=estimate, typical_s=typical))
                    print(f"  {run_.entry}: {jobs} settings x ({fixed_s:.1f} s + {epoch_s:.2f} s/epoch x "
                          f"{budget.initial_epochs if regime.trained else 0} epochs) = {estimate / 60:.1f} min "
                          f"(typical {typical / 60:.1f} min)", flush=True)
        total = sum(r["estimate_s"] for r in rows if r["n_train"] == n)
        typical = sum(r["typical_s"] for r in rows if r["n_train"] == n)
        print(f"N = {n}: at least {total / 3600:.2f} h, typically {typical / 3600:.2f} h", flush=True)
    total, typical = sum(r["estimate_s"] for r in rows), sum(r["typical_s"] for r in rows)
    print(f"all sizes: at least {total / 3600:.2f} h, typically {typical / 3600:.2f} h (1-minute load average now "
          f"{os.getloadavg()[0]:.1f}; costs measured under load are too high by about the load's factor)", flush=True)
    return rows
