"""Does an Adam-like infinite-width limit close the gap to finite networks? (Sernau 2024, arXiv:2406.18800)

The paper's three claims, tested on one data set per run:

1. infinite-width NTK models under-perform traditional finite networks;
2. they still do when feature learning is disabled in the finite networks
   (linearized networks, readout-only training);
3. the gap comes from the optimizer: an Adam-like infinite-width limit erases it.

Regimes ([`REGIMES`][infinite_width.experiments.sernau.REGIMES]), each on MLPs with ``depth`` hidden ReLU layers and
MSE on one-hot targets:

* finite networks trained the way a practitioner trains them
  (``Finite.traditional``: standard parametrization, one global Adam rate,
  not centred) at several widths: ``traditional_adam``; the same network
  linearized at its initialisation (``linearized_adam``), with its readout
  trained only (``readout_adam``), and trained with SGD (``finite_sgd``);
* their infinite-width counterparts: NTK descent (``ntk_descent``), NNGP
  descent (``nngp_descent``: readout only), the Adam-like limit with every
  layer (``adam_limit``) and the readout only (``adam_limit_readout``);
* t = infinity kernel baselines: NTK ridge (``ntk_ridge``) and the NNGP
  posterior (``nngp_posterior``).

Fair comparison ([`run`][infinite_width.experiments.sernau.run]): every regime gets the same rule and budget.
The last ``validation`` training points are held out; each regime is trained
on the rest for ``steps`` steps at every value of its grid (learning rates
for trained regimes, relative ridges for the baselines), and the setting and
the recorded step with the best validation accuracy are chosen (ties: lower
validation loss). The chosen setting is then retrained on the whole training
set for the chosen number of steps and evaluated once on the test set. The
test set is never used to choose anything; for the finite networks the width
reported in the claims is also the one with the best validation accuracy.

Error bars: the standard deviation over seeds for finite networks; for the
Adam-like limit the spread of the replicas' accuracies (each replica a full
run) divided by sqrt(replicas), the Monte Carlo error of the mean; for the
deterministic kernel regimes a bootstrap over test points. The claims'
differences and the fraction of the gap closed,
``(acc_limit - acc_NTK) / (acc_traditional - acc_NTK)``, get percentile
intervals from a paired bootstrap ([`bootstrap_accuracies`][infinite_width.experiments.sernau.bootstrap_accuracies]):
the same resampled test points for every regime, seeds resampled for finite networks
and the limit's predictions redrawn within their Monte Carlo standard error.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import zlib
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from infinite_width import datasets, kernels, optim
from infinite_width.architectures import mlp
from infinite_width.experiments import figures
from infinite_width.problem import Problem
from infinite_width.workflow import palette
from infinite_width.workflow.methods import AdamLimit, Finite, KernelDynamics, KernelRidge, Posterior
from infinite_width.workflow.recording import Record
from infinite_width.workflow.sweeps import sweep
from infinite_width.workflow.trajectory import Trajectory

__all__ = ["REGIMES", "FINITE_REGIMES", "QUICK_GRIDS", "Config", "run", "bootstrap_accuracies", "claims",
           "write_table", "figure"]

REGIMES = ("ntk_descent", "ntk_ridge", "nngp_posterior", "nngp_descent", "adam_limit", "traditional_adam",
           "readout_adam", "linearized_adam", "finite_sgd", "adam_limit_readout")
"""Every regime, in the order they run (what the claims need first) and appear in tables and legends."""
FINITE_REGIMES = ("traditional_adam", "linearized_adam", "readout_adam", "finite_sgd")
"""Regimes solved at every finite width (the others once, at infinite width)."""
KERNEL_MODELS = ("ntk_descent", "nngp_descent", "ntk_ridge", "nngp_posterior")
"""Infinite-width models of the NTK family that claims 1 and 2 compare against (the best on validation)."""
FROZEN_FEATURE_REGIMES = ("linearized_adam", "readout_adam")
"""Finite networks without feature learning (claim 2; the best on validation)."""

NAMES = {
    "traditional_adam": "finite Adam (traditional)", "linearized_adam": "finite Adam, linearized",
    "readout_adam": "finite Adam, readout only", "finite_sgd": "finite SGD",
    "adam_limit": "Adam-like limit", "adam_limit_readout": "Adam-like limit, readout only",
    "ntk_descent": "NTK descent", "nngp_descent": "NNGP descent (readout only)",
    "ntk_ridge": "NTK ridge", "nngp_posterior": "NNGP posterior",
}
"""Names in tables and legends."""
COLORS = {
    "traditional_adam": palette.COLORS[("adam", False)], "adam_limit": palette.COLORS[("adam", False)],
    "readout_adam": palette.COLORS[("adam", True)], "adam_limit_readout": palette.COLORS[("adam", True)],
    "finite_sgd": palette.COLORS[("sgd", False)], "ntk_descent": palette.COLORS[("sgd", False)],
    "nngp_descent": palette.COLORS[("sgd", True)], "linearized_adam": palette.COLORS["linearized_adam"],
    "ntk_ridge": palette.COLORS["ntk_ridge"], "nngp_posterior": palette.COLORS["nngp_posterior"],
}
"""Colours: a finite network and its limit share the colour of their family ([`infinite_width.workflow.palette`][])."""


QUICK_GRIDS = dict(adam_lrs=(1e-3, 1e-2), sgd_lrs=(0.1, 1.0), limit_adam_lrs=(0.01, 0.03),
                   kernel_lr_fractions=(0.5, 0.9), ridges=(1e-3, 1e-1), bootstrap=200)
"""Two-point grids for smoke tests (``--quick``): every code path, fewer solves."""


@dataclasses.dataclass(frozen=True)
class Config:
    """The sizes and grids of one run (see the module docstring).

    Attributes:
      depths: numbers of hidden layers of the MLPs (one panel each).
      widths: widths of the finite networks.
      seeds: finite networks per width and setting (error bars).
      steps: full-batch optimizer steps of the tuning runs (the budget).
      record: recorded steps per tuning run (log-spaced): the early-stopping candidates.
      validation: training points held out to choose the settings.
      samples, replicas: Monte Carlo sizes of the Adam-like limit.
      adam_lrs, sgd_lrs: learning-rate grids of finite networks (one global rate).
      limit_adam_lrs: Adam learning rates of the Adam-like limit (its per-group rates are ``lr * r_grp``).
      kernel_lr_fractions: NTK/NNGP descent rates as fractions of the largest stable rate.
      ridges: relative ridges of NTK ridge and the NNGP posterior.
      regimes: the regimes to run (a subset of [`REGIMES`][infinite_width.experiments.sernau.REGIMES]).
      bootstrap: bootstrap draws of the error bars and intervals.
      seed: the data subsets', split's and every solve's seed.
    """

    depths: Tuple[int, ...] = (2,)
    widths: Tuple[int, ...] = (128, 512)
    seeds: int = 2
    steps: int = 200
    record: int = 12
    validation: int = 400
    samples: int = 4096
    replicas: int = 4
    adam_lrs: Tuple[float, ...] = (1e-3, 3e-3)
    sgd_lrs: Tuple[float, ...] = (0.05, 0.5)
    limit_adam_lrs: Tuple[float, ...] = (0.01, 0.03)
    kernel_lr_fractions: Tuple[float, ...] = (0.5, 0.9)
    ridges: Tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    regimes: Tuple[str, ...] = REGIMES
    bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.regimes) - set(REGIMES)
        if unknown:
            raise ValueError(f"unknown regimes {sorted(unknown)}; expected some of {REGIMES}")
        for name in ("depths", "widths"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {getattr(self, name)}")
        for name, minimum in (("seeds", 1), ("steps", 1), ("record", 2), ("validation", 1), ("replicas", 2),
                              ("bootstrap", 10)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}")
        for name in ("adam_lrs", "sgd_lrs", "limit_adam_lrs", "kernel_lr_fractions", "ridges"):
            grid = getattr(self, name)
            if not grid or not all(math.isfinite(value) and value > 0 for value in grid):
                raise ValueError(f"{name} must be a non-empty grid of positive numbers, got {grid}")


# --------------------------------------------------------------------------
# Regimes as solve arguments.


def _traditional(width: int, seeds: int, **options) -> Finite:
    return dataclasses.replace(Finite.traditional(width, seeds=seeds), **options)


def _kernel_lr_max(arch, problem: Problem, readout_only: bool) -> float:
    """The largest stable SGD rate of the NTK (NNGP kernel for ``readout_only``) descent on the training points."""
    kernel_fn = kernels.nngp if readout_only else kernels.ntk
    k = np.asarray(kernel_fn(arch, problem.x_train, dtype="float64"))
    return kernels.max_learning_rate(k, problem.out_dim)


def _settings(regime: str, config: Config, arch, problem: Problem) -> List[float]:
    """The grid of ``regime``: learning rates, or relative ridges for the t = infinity baselines."""
    if regime in ("ntk_ridge", "nngp_posterior"):
        return list(config.ridges)
    if regime in ("ntk_descent", "nngp_descent"):
        lr_max = _kernel_lr_max(arch, problem, regime == "nngp_descent")
        return [float(f"{fraction * lr_max:.4g}") for fraction in config.kernel_lr_fractions]
    if regime == "finite_sgd":
        return list(config.sgd_lrs)
    if regime.startswith("adam_limit"):
        return list(config.limit_adam_lrs)
    return list(config.adam_lrs)


def _job(regime: str, width: Optional[int], setting: float, config: Config, arch, problem: Problem, steps: int,
         record) -> dict:
    """The [`solve`][infinite_width.solve] arguments of ``regime`` at ``width`` with learning rate / ridge ``setting``."""
    job = dict(problem=problem, arch=arch, key=config.seed)
    if regime == "ntk_ridge":
        return dict(job, method=KernelRidge("ntk", ridge=setting))
    if regime == "nngp_posterior":
        return dict(job, method=Posterior(ridge=setting))
    job.update(steps=steps, record=record, readout_only=regime in ("readout_adam", "adam_limit_readout",
                                                                    "nngp_descent"))
    if regime in ("ntk_descent", "nngp_descent"):
        return dict(job, method=KernelDynamics(), optimizer=optim.sgd(setting))
    if regime == "finite_sgd":
        return dict(job, method=_traditional(width, config.seeds), optimizer=optim.sgd(setting))
    if regime.startswith("adam_limit"):
        return dict(job, method=AdamLimit(samples=config.samples, replicas=config.replicas),
                    optimizer=optim.adam(setting))
    options = {"linearized": True} if regime == "linearized_adam" else {}
    return dict(job, method=_traditional(width, config.seeds, **options), optimizer=optim.adam(setting))


def _candidates(config: Config) -> List[Tuple[str, Optional[int]]]:
    """(regime, width) pairs to run: finite regimes at every width, the others once."""
    return [(regime, width) for regime in config.regimes
            for width in (config.widths if regime in FINITE_REGIMES else (None,))]


def _name(depth: int, regime: str, width: Optional[int], setting: Optional[float] = None) -> str:
    name = f"mlp{depth}-{regime}" + ("" if width is None else f"-w{width}")
    return name if setting is None else f"{name}-{setting:.4g}"


# --------------------------------------------------------------------------
# Tuning on the validation split, then the final solve.


def _validation_choice(trajectory: Trajectory) -> Tuple[float, float, int]:
    """(validation accuracy, validation loss, step) at the best recorded step (mean over non-diverged seeds)."""
    accuracy, _ = trajectory.metric("test_accuracy")
    loss, _ = trajectory.metric("test_loss")
    if np.all(np.isnan(accuracy)):
        return -math.inf, math.inf, int(trajectory.steps[-1])
    # best accuracy, then lowest loss; NaN rows last
    order = np.lexsort((np.nan_to_num(loss, nan=np.inf), -np.nan_to_num(accuracy, nan=-np.inf)))
    best = order[0]
    return float(accuracy[best]), float(loss[best]), int(trajectory.steps[best])


def split_validation(problem: Problem, validation: int) -> Problem:
    """The tuning problem: training points but the last ``validation`` ones, evaluated on those."""
    if not 0 < validation < problem.n_train:
        raise ValueError(f"validation must lie in [1, {problem.n_train - 1}] (the training points), got {validation}")
    cut = problem.n_train - validation
    return Problem(problem.x_train[:cut], problem.y_train[:cut], problem.x_train[cut:], problem.y_train[cut:],
                   loss=problem.loss, name=f"{problem.name} (validation split)")


def run(problem: Problem, config: Config, out_dir, *, progress: bool = True, finished_only: bool = False
        ) -> Dict[str, dict]:
    """Tune, retrain and evaluate every regime of ``config`` on ``problem``; resumable in ``out_dir``.

    Tuning solves go to ``out_dir/tuning/``, final solves to ``out_dir/final/``
    (each a resumable [`sweep`][infinite_width.sweep]: finished solves are read back).
    ``finished_only``: compute nothing, keep the regimes whose final solve is
    on disk (a report of a run still going or interrupted).

    Returns:
      ``{final job name: entry}`` where entry has ``depth``, ``regime``,
      ``width`` (None for infinite width), ``setting`` (chosen rate or ridge),
      ``step`` (chosen step, None for baselines), ``validation_accuracy``,
      ``validation_loss``, ``trajectory`` (the final [`Trajectory`][infinite_width.Trajectory]),
      ``grid`` (the settings tried) and ``steps`` (the step budget).
    """
    tuning_problem = split_validation(problem, config.validation)
    tuning_record = Record(count=config.record, spacing="log")
    chosen = {}
    for depth in config.depths:
        arch = mlp(depth=depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
        candidates = _candidates(config)
        print(f"mlp({depth}): {len(candidates)} regimes and widths, tuned on {tuning_problem.describe()}, "
              f"evaluated on {problem.describe()}", flush=True)
        # One candidate at a time, tuned then retrained, so an interrupted run has whole results so far.
        for regime, width in candidates:
            key = _name(depth, regime, width)
            if finished_only and not Path(out_dir, "final", f"{key}.npz").exists():
                print(f"not finished yet: {key}", flush=True)
                continue
            settings = _settings(regime, config, arch, tuning_problem)
            jobs = {_name(depth, regime, width, setting): _job(regime, width, setting, config, arch, tuning_problem,
                                                                config.steps, tuning_record) for setting in settings}
            tuned = sweep(jobs, Path(out_dir, "tuning"), progress=progress)
            scores = [(_validation_choice(tuned[name]), setting) for name, setting in zip(jobs, settings)]
            (accuracy, loss, step), setting = max(scores, key=lambda s: (s[0][0], -s[0][1]))
            static = next(iter(tuned.values())).is_static
            final = sweep({key: _job(regime, width, setting, config, arch, problem, step, [step])},
                          Path(out_dir, "final"), progress=progress)
            chosen[key] = dict(depth=depth, regime=regime, width=width, setting=setting,
                               step=None if static else step, validation_accuracy=accuracy, validation_loss=loss,
                               trajectory=final[key], grid=settings, steps=config.steps)
    return chosen


# --------------------------------------------------------------------------
# Numbers: error bars, bootstrap, claims.


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(..., Nt) per-point correctness of (..., Nt, k) predictions."""
    return (np.argmax(predictions, axis=-1) == labels).astype(np.float64)


def bootstrap_accuracies(entries: Mapping[str, dict], y_test: np.ndarray, draws: int, seed: int = 0
                         ) -> Dict[str, np.ndarray]:
    """Paired bootstrap of the test accuracy of every entry: ``{name: (draws,)}``.

    Every draw resamples the test points (the same points for every entry);
    for finite networks it also resamples the seeds (non-diverged ones), and
    for a Monte Carlo limit it redraws the mean predictions within their
    standard error (Gaussian), so the intervals include the seed spread and
    the Monte Carlo error as well as the finite test set.
    """
    rng = np.random.default_rng(seed)
    labels = np.argmax(y_test, axis=-1)
    n_test = labels.shape[0]
    points = rng.integers(0, n_test, size=(draws, n_test))
    out = {}
    for name, entry in entries.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])  # an entry's draws do not depend on the others
        t: Trajectory = entry["trajectory"]
        keep = ~t.diverged if np.any(~t.diverged) else np.ones_like(t.diverged)
        predictions = t.test_predictions[keep, -1]  # (S, Nt, k)
        if t.test_stderr is not None:
            noisy = predictions[0] + t.test_stderr[-1] * rng.standard_normal((draws,) + predictions.shape[1:])
            noisy = np.take_along_axis(_accuracy(noisy, labels), points, axis=1).mean(axis=1)
            # Redrawn predictions are noisier than the mean and so less accurate on average: remove that
            # bias (their mean shortfall against the mean predictions on the same points), keep the spread.
            clean = _accuracy(predictions[0], labels)[points].mean(axis=1)
            out[name] = noisy - (noisy - clean).mean()
            continue
        correct = _accuracy(predictions, labels)  # (S, Nt)
        seeds = rng.integers(0, correct.shape[0], size=(draws, correct.shape[0]))
        out[name] = np.stack([correct[seeds[b]][:, points[b]].mean() for b in range(draws)])
    return out


def _error_bars(entry: dict, boot: np.ndarray, y_test: np.ndarray) -> dict:
    """Test accuracy and loss with the error bar of the regime's kind (module docstring)."""
    t: Trajectory = entry["trajectory"]
    accuracy, accuracy_std = t.final("test_accuracy")
    loss, loss_std = t.final("test_loss")
    replicas = t.extras.get("replica_test_accuracy")
    if replicas is not None:
        r = replicas.shape[0]
        return dict(test_accuracy=accuracy, test_accuracy_err=float(replicas[:, -1].std(ddof=1) / math.sqrt(r)),
                    test_loss=loss, test_loss_err=float(t.extras["replica_test_loss"][:, -1].std(ddof=1) / math.sqrt(r)),
                    replica_accuracy_spread=float(replicas[:, -1].std(ddof=1)),
                    error="Monte Carlo (replica spread / sqrt(replicas))")
    if t.seeds > 1:
        return dict(test_accuracy=accuracy, test_accuracy_err=accuracy_std, test_loss=loss, test_loss_err=loss_std,
                    error=f"std over {int(np.sum(~t.diverged))} seeds")
    per_point = 0.5 * np.mean((t.test_predictions[0, -1] - y_test) ** 2, axis=-1)
    rng = np.random.default_rng(1)
    losses = per_point[rng.integers(0, per_point.size, size=(len(boot), per_point.size))].mean(axis=1)
    return dict(test_accuracy=accuracy, test_accuracy_err=float(boot.std(ddof=1)), test_loss=loss,
                test_loss_err=float(losses.std(ddof=1)), error=f"bootstrap over {per_point.size} test points")


def _interval(values: np.ndarray) -> List[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _best(entries: Mapping[str, dict], regimes: Sequence[str], depth: int) -> Optional[str]:
    """The entry among ``regimes`` at ``depth`` with the best validation accuracy (None if none ran)."""
    names = [n for n, e in entries.items() if e["regime"] in regimes and e["depth"] == depth]
    return max(names, key=lambda n: entries[n]["validation_accuracy"]) if names else None


def _budget_note(entries: Mapping[str, dict], names: Sequence[str]) -> str:
    """A warning naming the compared regimes whose best step was the step budget (they may still improve)."""
    bounded = [NAMES[entries[n]["regime"]] for n in names
               if "grid" in entries[n] and "step budget" in _limited_by(entries[n])]
    return f" [best at the step budget, may still improve: {', '.join(bounded)}]" if bounded else ""


def _significance(interval: Sequence[float]) -> str:
    return "positive" if interval[0] > 0 else "negative" if interval[1] < 0 else "zero within the interval"


def claims(entries: Mapping[str, dict], boot: Mapping[str, np.ndarray], depth: int) -> List[dict]:
    """The verdicts on the three claims at ``depth``: dicts with ``claim``, ``verdict``, ``numbers``, ``text``.

    Differences of test accuracy with 95 % paired-bootstrap intervals:
    claim 1 compares the traditional network (its best width on validation)
    with the best NTK-family kernel model on validation; claim 2 the best
    finite network without feature learning with that kernel model; claim 3
    the fraction of the gap closed ``(limit - NTK descent) / (traditional -
    NTK descent)`` and the remaining gap ``traditional - limit``.
    """
    trad, kernel = _best(entries, ("traditional_adam",), depth), _best(entries, KERNEL_MODELS, depth)
    frozen, limit = _best(entries, FROZEN_FEATURE_REGIMES, depth), _best(entries, ("adam_limit",), depth)
    ntk = _best(entries, ("ntk_descent",), depth)
    out = []

    def difference(a, b):
        values = boot[a] - boot[b]
        return dict(difference=float(np.mean(values)), interval=_interval(values))

    def verdict(claim, a, b, supported, contradicted):
        if a is None or b is None:
            return dict(claim=claim, verdict="not run", numbers={},
                        text=f"claim {claim}: not run (a regime it needs did not run)")
        numbers = dict(difference(a, b), better=a, worse=b)
        sign = _significance(numbers["interval"])
        result = {"positive": "supported", "negative": "not supported", "zero within the interval":
                  "inconclusive at this size"}[sign]
        text = (f"claim {claim}: {result}: {NAMES[entries[a]['regime']]} minus {NAMES[entries[b]['regime']]} = "
                f"{numbers['difference']:+.4f} test accuracy (95% CI {numbers['interval'][0]:+.4f} .. "
                f"{numbers['interval'][1]:+.4f}); {supported if sign == 'positive' else contradicted if sign == 'negative' else 'the difference is not resolved'}"
                + _budget_note(entries, (a, b)))
        return dict(claim=claim, verdict=result, numbers=numbers, text=text)

    out.append(verdict(1, trad, kernel, "the kernel model under-performs", "the data contradict the paper: the "
                       "kernel model is better"))
    out.append(verdict(2, frozen, kernel, "even without feature learning the finite network is better",
                       "the data contradict the paper: the kernel model beats the frozen-feature network"))
    if None in (trad, limit, ntk):
        out.append(dict(claim=3, verdict="not run", numbers={}, text="claim 3: not run (a regime it needs did not run)"))
        return out
    gap = boot[trad] - boot[ntk]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (boot[limit] - boot[ntk]) / gap
    fraction = fraction[np.isfinite(fraction)]
    remaining, gain = difference(trad, limit), difference(limit, ntk)
    point = float((np.mean(boot[limit]) - np.mean(boot[ntk])) / (np.mean(boot[trad]) - np.mean(boot[ntk])))
    numbers = dict(fraction_closed=point, fraction_interval=_interval(fraction) if fraction.size else [math.nan] * 2,
                   gap=difference(trad, ntk), remaining_gap=remaining, limit_minus_ntk=gain)
    if _significance(numbers["gap"]["interval"]) == "negative":
        result, why = "inconclusive at this size", ("the traditional network is worse than NTK descent here: there is "
                                                    "no gap to close (the fraction is meaningless)")
    elif _significance(numbers["gap"]["interval"]) != "positive":
        result, why = "inconclusive at this size", "there is no resolved gap between the traditional network and NTK descent to close"
    elif _significance(gain["interval"]) != "positive":
        result, why = "not supported", "the Adam-like limit does not beat NTK descent"
    elif _significance(remaining["interval"]) == "positive":
        result, why = "not supported", "the limit closes part of the gap, not all of it"
    else:
        result, why = "supported", "the limit beats NTK descent and no gap to the traditional network remains"
    text = (f"claim 3: {result}: fraction of the gap closed {point:.2f} (95% CI {numbers['fraction_interval'][0]:.2f} .. "
            f"{numbers['fraction_interval'][1]:.2f}); limit minus NTK descent {gain['difference']:+.4f}, traditional "
            f"minus limit {remaining['difference']:+.4f} (95% CI {remaining['interval'][0]:+.4f} .. "
            f"{remaining['interval'][1]:+.4f}); {why}" + _budget_note(entries, (trad, limit, ntk)))
    out.append(dict(claim=3, verdict=result, numbers=numbers, text=text))
    return out


def _limited_by(entry: dict) -> str:
    """What may have bounded a tuned regime: its best setting at an end of the grid, its best step at the budget."""
    notes = []
    if len(entry["grid"]) > 1 and entry["setting"] in (min(entry["grid"]), max(entry["grid"])):
        notes.append("grid " + ("max" if entry["setting"] == max(entry["grid"]) else "min"))
    if entry["step"] is not None and entry["step"] == entry["steps"]:
        notes.append("step budget")
    return ", ".join(notes)


def summarize(entries: Mapping[str, dict], y_test: np.ndarray, config: Config) -> Tuple[List[dict], Dict]:
    """The table rows (one per final solve) and ``{depth: claims}``."""
    boot = bootstrap_accuracies(entries, y_test, config.bootstrap, config.seed)
    rows = []
    for name, entry in entries.items():
        t = entry["trajectory"]
        rows.append(dict(
            name=name, depth=entry["depth"], regime=entry["regime"], label=NAMES[entry["regime"]],
            width="inf" if entry["width"] is None else entry["width"], setting=entry["setting"],
            setting_kind="ridge" if t.is_static else "learning rate", step=entry["step"],
            validation_accuracy=entry["validation_accuracy"], **_error_bars(entry, boot[name], y_test),
            diverged=f"{int(t.diverged.sum())}/{t.seeds}", wall_time_s=t.metadata.get("wall_time"),
            limited_by=_limited_by(entry),
        ))
    return rows, {depth: claims(entries, boot, depth) for depth in sorted({e["depth"] for e in entries.values()})}


# --------------------------------------------------------------------------
# Output.

_COLUMNS = ("name", "depth", "regime", "label", "width", "setting_kind", "setting", "step", "validation_accuracy",
            "test_accuracy", "test_accuracy_err", "test_loss", "test_loss_err", "error", "diverged", "limited_by",
            "wall_time_s")


def write_table(rows: Sequence[dict], verdicts: Mapping, out_dir, header: dict) -> str:
    """``results.json`` (header, rows, verdicts) and ``results.csv`` in ``out_dir``; returns the printed text."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    Path(out_dir, "results.json").write_text(json.dumps(
        dict(header, rows=list(rows), claims={str(d): v for d, v in verdicts.items()}), indent=1))
    with open(Path(out_dir, "results.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"| depth | regime | width | {'setting':>8} | step | val acc | test acc | test loss | best at |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['depth']} | {r['label']} | {r['width']} | {r['setting']:.3g} | "
                     f"{'-' if r['step'] is None else r['step']} | {r['validation_accuracy']:.4f} | "
                     f"{r['test_accuracy']:.4f} ± {r['test_accuracy_err']:.4f} | "
                     f"{r['test_loss']:.4f} ± {r['test_loss_err']:.4f} | {r['limited_by']} |")
    for depth, items in verdicts.items():
        lines += ["", f"mlp({depth}):"] + [f"- {item['text']}" for item in items]
    text = "\n".join(lines) + "\n"
    Path(out_dir, "table.md").write_text(text)
    return text


def figure(rows: Sequence[dict], title: str):
    """Test accuracy against width, one panel per depth (shared y axis, one legend).

    Finite networks: lines with error bars over seeds; infinite-width regimes:
    horizontal lines with a band of their error (Monte Carlo for the limit,
    bootstrap over test points for the kernel regimes).
    """
    depths = sorted({r["depth"] for r in rows})
    fig, axes = figures.new_figure(1, len(depths), sharey=True, panel_size=(4.6, 3.4))
    widths = sorted({r["width"] for r in rows if r["width"] != "inf"}) or [1]
    span = (widths[0] / 1.5, widths[-1] * 1.5)
    for ax, depth in zip(axes[0], depths):
        for regime in REGIMES:
            mine = [r for r in rows if r["depth"] == depth and r["regime"] == regime]
            if not mine:
                continue
            color, label = COLORS[regime], NAMES[regime]
            if regime in FINITE_REGIMES:
                mine.sort(key=lambda r: r["width"])
                ax.errorbar([r["width"] for r in mine], [r["test_accuracy"] for r in mine],
                            yerr=[r["test_accuracy_err"] for r in mine], color=color, marker="o", capsize=3,
                            label=label)
                continue
            (r,) = mine
            style = ":" if r["step"] is None else "--"
            ax.axhline(r["test_accuracy"], color=color, linestyle=style, linewidth=1.6, label=label)
            ax.axhspan(r["test_accuracy"] - r["test_accuracy_err"], r["test_accuracy"] + r["test_accuracy_err"],
                       color=color, alpha=0.18, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlim(*span)
        ax.set_xlabel("width of the finite networks")
        ax.set_title(f"{title}, mlp({depth})", fontsize=9)
    axes[0][0].set_ylabel("test accuracy")
    figures.figure_legend(fig, axes[0], columns=min(4, 2 * len(depths)), extra=[
        figures.reference_line("infinite-width dynamics (band: error)", "--"),
        figures.reference_line("t = infinity kernel baseline", ":")])
    return fig


def load_problem(dataset: str, data_dir, n_train: int, n_test: int, seed: int) -> Problem:
    """The flattened, standardized data set as an MSE problem on one-hot targets (10 classes)."""
    data = datasets.load(dataset, data_dir, n_train=n_train, n_test=n_test, seed=seed)
    return Problem.from_dataset(data, loss="mse")


def report(problem: Problem, config: Config, out_dir, *, progress: bool = True, finished_only: bool = False
           ) -> Tuple[List[dict], Dict]:
    """[`run`][infinite_width.experiments.sernau.run], then the table (JSON, CSV, Markdown), the verdicts (printed) and the figure (PDF, PNG)."""
    entries = run(problem, config, out_dir, progress=progress, finished_only=finished_only)
    rows, verdicts = summarize(entries, problem.y_test, config)
    header = dict(problem=problem.describe(), config=dataclasses.asdict(config))
    print(write_table(rows, verdicts, out_dir, header))
    paths = figures.save(figure(rows, problem.name), Path(out_dir, "sernau_2024"))
    print("wrote", ", ".join(str(p) for p in paths))
    return rows, verdicts
