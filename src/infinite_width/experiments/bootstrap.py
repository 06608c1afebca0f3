"""The one bootstrap of the experiments: accuracies and paired differences over test points (`scipy.stats.bootstrap`).

* [`accuracy_interval`][infinite_width.experiments.bootstrap.accuracy_interval]:
  one model's accuracy, its bootstrap standard error and percentile interval;
* [`PairedBootstrap`][infinite_width.experiments.bootstrap.PairedBootstrap]:
  several models scored on the same test points. One `scipy.stats.bootstrap`
  call with ``paired=True`` resamples the points once for all of them, so the
  interval of a difference of two models counts only what differs between
  them (the hard and easy test points are shared).

A model whose accuracy is itself an estimate (a mean over seeds of finite
networks, a Monte Carlo limit) has a standard error of its own beside the
test points' (``model_se``: the seeds' standard deviation over sqrt(seeds), the
Monte Carlo error). Those errors are independent of the test points, so each
bootstrap draw of a model's accuracy gets an independent Gaussian term of that
standard deviation (from a generator seeded like the bootstrap): the
intervals then count both sources of error.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import scipy.stats

from infinite_width._src.checks import check_int

__all__ = ["LEVEL", "accuracy_interval", "PairedBootstrap"]

LEVEL = 0.95
"""Confidence level of every interval."""
# Resamples per vectorized batch: bounds the memory of scipy's resampled arrays (batch x points per model).
_BATCH = 200


def _means(*samples, axis=-1):
    return np.stack([np.mean(sample, axis=axis) for sample in samples])


def _check_correct(name: str, values) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"{name} must be a vector of per-point scores (n >= 2,), got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{name} must hold per-point scores in [0, 1] (1: correct), got values outside or NaN")
    return values


def _percentiles(draws: np.ndarray) -> Tuple[float, float]:
    tail = 50.0 * (1.0 - LEVEL)
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def accuracy_interval(correct, resamples: int = 2000, seed: int = 0) -> Dict[str, float]:
    """The accuracy of a vector of per-point correctness with its bootstrap error over the points.

    Args:
      correct: (n,) booleans, or scores in [0, 1] (e.g. the fraction of seeds correct on each point).
      resamples: bootstrap resamples.
      seed: the seed of the resampling.

    Returns:
      ``accuracy`` (the mean), ``se`` (standard deviation of the resampled
      accuracies), ``low`` and ``high`` (their percentiles at `LEVEL`).
    """
    boot = PairedBootstrap({"model": correct}, resamples=resamples, seed=seed)
    low, high = boot.interval("model")
    return {"accuracy": boot.accuracy("model"), "se": boot.standard_error("model"), "low": low, "high": high}


class PairedBootstrap:
    """Bootstrap distributions of the accuracies of models scored on the same test points.

    Args:
      correct: ``{model: (n,) per-point correctness}``, the same n points for
        every model (booleans, or the fraction of a model's seeds correct on each point).
      resamples: bootstrap resamples (>= 10).
      seed: the seed of the resampling and of the model noise.
      model_se: ``{model: standard error}`` of models whose accuracy is an
        estimate of its own (see the module docstring); 0 for the others.

    Raises:
      ValueError: vectors of different lengths, values outside [0, 1], a
        negative or non-finite ``model_se``, an unknown model in ``model_se``.
    """

    def __init__(self, correct: Mapping[str, np.ndarray], *, resamples: int = 2000, seed: int = 0,
                 model_se: Optional[Mapping[str, float]] = None):
        if not isinstance(correct, Mapping) or not correct:
            raise TypeError("correct must be a non-empty mapping of model names to per-point correctness vectors")
        resamples = check_int("resamples", resamples, 10)
        self.names = list(correct)
        data = [_check_correct(f"correct[{name!r}]", correct[name]) for name in self.names]
        if len({values.size for values in data}) > 1:
            raise ValueError("every model must be scored on the same test points: got correctness vectors of "
                             f"lengths {sorted({values.size for values in data})}")
        model_se = dict(model_se or {})
        unknown = sorted(set(model_se) - set(self.names))
        if unknown:
            raise ValueError(f"model_se names models {unknown} that are not in correct")
        for name, value in model_se.items():
            if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"model_se[{name!r}] must be a finite number >= 0, got {value!r}")
        self.points = data[0].size
        self._accuracy = {name: float(values.mean()) for name, values in zip(self.names, data)}
        result = scipy.stats.bootstrap(tuple(data), _means, paired=True, vectorized=True, n_resamples=resamples,
                                       batch=_BATCH, method="percentile", rng=np.random.default_rng(seed))
        draws = np.array(result.bootstrap_distribution, np.float64).reshape(len(self.names), resamples)
        noise = np.random.default_rng([seed, 1]).standard_normal(draws.shape)
        scales = np.array([float(model_se.get(name, 0.0)) for name in self.names])[:, None]
        self._draws = dict(zip(self.names, draws + scales * noise))

    def _get(self, name: str) -> np.ndarray:
        if name not in self._draws:
            raise KeyError(f"no model {name!r} in this bootstrap; models: {self.names}")
        return self._draws[name]

    def draws(self, name: str) -> np.ndarray:
        """The bootstrap distribution (resamples,) of ``name``'s accuracy.

        Args:
          name: a model.
        """
        return self._get(name).copy()

    def accuracy(self, name: str) -> float:
        """The accuracy of ``name`` on the test points (no resampling).

        Args:
          name: a model.
        """
        self._get(name)
        return self._accuracy[name]

    def standard_error(self, name: str) -> float:
        """The standard deviation of ``name``'s bootstrap distribution (test points and model noise).

        Args:
          name: a model.
        """
        return float(np.std(self._get(name), ddof=1))

    def interval(self, name: str) -> Tuple[float, float]:
        """The percentile interval of ``name``'s accuracy.

        Args:
          name: a model.
        """
        return _percentiles(self._get(name))

    def difference(self, a: str, b: str) -> Dict[str, object]:
        """``accuracy(a) - accuracy(b)`` with its paired interval: ``difference``, ``interval``, ``se``.

        Args:
          a: a model.
          b: another model.
        """
        draws = self._get(a) - self._get(b)
        return {"difference": self._accuracy[a] - self._accuracy[b], "interval": list(_percentiles(draws)),
                "se": float(np.std(draws, ddof=1))}

    def ratio_interval(self, numerator: Tuple[str, str], denominator: Tuple[str, str]) -> Tuple[float, float]:
        """Percentile interval of ``(acc a - acc b) / (acc c - acc d)`` over the draws with a non-zero denominator.

        Args:
          numerator: the models ``(a, b)``.
          denominator: the models ``(c, d)``.
        """
        top = self._get(numerator[0]) - self._get(numerator[1])
        bottom = self._get(denominator[0]) - self._get(denominator[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = top / bottom
        ratio = ratio[np.isfinite(ratio)]
        return _percentiles(ratio) if ratio.size else (math.nan, math.nan)
