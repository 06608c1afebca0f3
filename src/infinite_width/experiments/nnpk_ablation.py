"""Ablations of the Neural Network Prior Kernel (Amid et al. 2022, claim 1), resumable.

Claim 1 of Amid et al.: randomly initialised networks are good feature
extractors in expectation, across architectures, initialisations and
activations. [`run`][infinite_width.experiments.nnpk_ablation.run] measures it as the test accuracy of kernel ridge
regression with the Monte Carlo NNPK ([`infinite_width.kernels.nnpk`][])
for a list of [`Config`][infinite_width.experiments.nnpk_ablation.Config] (architecture, activation, initialisation,
width, number of networks m), each beside the closed-form NNGP or CNN-GP of
the same architecture where one exists (docs/theory.md, section 8).

Design (the full product of the axes is far too large for a CPU):
[`one_factor_grid`][infinite_width.experiments.nnpk_ablation.one_factor_grid] builds one factor at a time around a base
configuration, and every configuration gives its whole curve of accuracy
against m from one streaming pass over its largest m
([`infinite_width.kernels.nnpk_prefixes`][]), at every power of two.

Evaluation ([`evaluate_kernel`][infinite_width.experiments.nnpk_ablation.evaluate_kernel]): the relative ridge (see
[`infinite_width.limits.baselines.kernel_regression`][]) is chosen from
[`RIDGES`][infinite_width.experiments.nnpk_ablation.RIDGES] by accuracy on a validation split carved from the training
set (its last ``validation_fraction``; the training subsets of
[`infinite_width.datasets.load`][] are in random order), ties going to the
larger ridge; the model is then refitted on the whole training set and
scored once on the test set. Error bars are bootstrap standard errors over
test points (and a 95% percentile interval), from a fixed seed. The NNGP
reference goes through the same rule.

Architectures ([`architecture`][infinite_width.experiments.nnpk_ablation.architecture], all with weight scale sqrt(2)):
``mlp1`` .. ``mlp4`` (depth 1-4, bias scale 0.1), ``conv2`` (two 3x3
convolutions, global average pooling, dense readout), ``myrtle5``
(Shankar et al. 2020), and ``conv2-maxpool`` / ``conv2-layernorm``: ``conv2``
with a 2x2 max pooling, or a layer normalization over channels, after its
first activation. ``conv2-maxpool`` and any network with ``tanh`` have no
closed form (the NNPK is their only kernel); ``conv2-layernorm`` has the
infinite-width one of neural-tangents.

Files in ``out_dir``:

* ``points/<config name>.json`` and ``references/<arch>-<activation>.json``:
  one per configuration and per closed-form reference, written atomically.
  Re-running skips the files already there, so an interrupted run resumes
  at the configuration it stopped in; each configuration draws its networks
  from a key derived from ``seed`` and its name ([`point_key`][infinite_width.experiments.nnpk_ablation.point_key]), so
  it gives the same numbers whenever and in whatever order it runs;
* ``summary.json`` and ``summary.csv``: one row per (configuration, m) and
  per reference ([`summary_rows`][infinite_width.experiments.nnpk_ablation.summary_rows]).

Every record holds the wall time, the process CPU time and the load average
(the machine may be shared).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from tqdm.auto import tqdm

from infinite_width import kernels, losses
from infinite_width._src.records import Clock, problem_settings, read_record, write_csv, write_json, write_record
from infinite_width.architectures import (
    ACTIVATIONS,
    NO_CLOSED_FORM_ACTIVATIONS,
    Activation,
    Architecture,
    Conv,
    Dense,
    GlobalAvgPool,
    LayerNorm,
    MaxPool,
    conv,
    mlp,
    myrtle,
)
from infinite_width.finite.networks import INITS
from infinite_width.limits.baselines import kernel_regression
from infinite_width.problem import Problem

__all__ = [
    "FAMILIES",
    "RIDGES",
    "Config",
    "architecture",
    "one_factor_grid",
    "point_key",
    "pool_images",
    "bootstrap_accuracy",
    "evaluate_kernel",
    "run",
    "summary_rows",
    "final_rows",
    "markdown_table",
    "figure",
]

FAMILIES: Dict[str, Tuple[str, ...]] = {
    "mlp": ("mlp1", "mlp2", "mlp3", "mlp4"),
    "conv": ("conv2", "myrtle5", "conv2-maxpool", "conv2-layernorm"),
}
"""Architecture names of each family; a family shares one data set (vectors for MLPs, images for conv nets)."""
RIDGES: Tuple[float, ...] = tuple(10.0**k for k in range(-6, 2))
"""Relative ridges tried on the validation split."""
_W_STD = math.sqrt(2.0)
_MLP_B_STD = 0.1
_FORMAT_VERSION = 2


# --------------------------------------------------------------------------
# Configurations.


def architecture(name: str, activation: str, out_dim: int) -> Architecture:
    """The architecture ``name`` (one of [`FAMILIES`][infinite_width.experiments.nnpk_ablation.FAMILIES]) with ``activation`` and ``out_dim`` outputs."""
    if name.startswith("mlp") and name in FAMILIES["mlp"]:
        return mlp(int(name[3:]), activation, _W_STD, _MLP_B_STD, out_dim=out_dim)
    if name == "conv2":
        return conv(2, activation, W_std=_W_STD, out_dim=out_dim)
    if name == "myrtle5":
        return myrtle(5, activation, W_std=_W_STD, out_dim=out_dim)
    if name in ("conv2-maxpool", "conv2-layernorm"):
        middle = MaxPool() if name == "conv2-maxpool" else LayerNorm()
        layers = (
            Conv(None, (3, 3), (1, 1), "SAME", _W_STD, 0.0), Activation(activation), middle,
            Conv(None, (3, 3), (1, 1), "SAME", _W_STD, 0.0), Activation(activation),
            GlobalAvgPool(), Dense(out_dim, _W_STD, 0.0),
        )
        return Architecture(layers, name=f"{name}-{activation}", input_kind="image")
    known = [n for names in FAMILIES.values() for n in names]
    raise ValueError(f"unknown architecture {name!r}; expected one of {known}")


@dataclasses.dataclass(frozen=True)
class Config:
    """One NNPK configuration: architecture, activation, initialisation, width and largest number of networks.

    The accuracy is reported at every power of two m <= ``networks`` and at
    ``networks`` itself.
    """

    arch: str
    activation: str = "relu"
    init: str = "gaussian"
    width: int = 512
    networks: int = 1024

    def __post_init__(self):
        if not any(self.arch in names for names in FAMILIES.values()):
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {sum(FAMILIES.values(), ())}")
        if self.activation not in ACTIVATIONS + NO_CLOSED_FORM_ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS + NO_CLOSED_FORM_ACTIVATIONS}"
            )
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {INITS}")
        for field in ("width", "networks"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, field, int(value))

    @property
    def family(self) -> str:
        """``"mlp"`` or ``"conv"``: which data set (vectors or images) it runs on."""
        return next(family for family, names in FAMILIES.items() if self.arch in names)

    @property
    def name(self) -> str:
        """File-name stem, e.g. ``mlp2-relu-gaussian-w512-m1024``."""
        return f"{self.arch}-{self.activation}-{self.init}-w{self.width}-m{self.networks}"

    @property
    def reference_name(self) -> str:
        """Stem of its closed-form reference, shared by configurations that differ in init, width or m only."""
        return f"{self.arch}-{self.activation}"

    def architecture(self, out_dim: int) -> Architecture:
        return architecture(self.arch, self.activation, out_dim)


def one_factor_grid(base: Config, variations: Mapping[str, Sequence]) -> List[Config]:
    """``base``, then ``base`` with one field changed at a time, for every value in ``variations``.

    ``variations`` maps fields of [`Config`][infinite_width.experiments.nnpk_ablation.Config] (``"arch"``,
    ``"activation"``, ``"init"``, ``"width"``, ``"networks"``) to values; values equal to the
    base's are skipped, so ``base`` appears once.
    """
    if not isinstance(base, Config):
        raise TypeError(f"base must be a Config, got {type(base).__name__}")
    fields = {field.name for field in dataclasses.fields(Config)}
    unknown = sorted(set(variations) - fields)
    if unknown:
        raise ValueError(f"unknown Config fields {unknown}; expected some of {sorted(fields)}")
    configs = [base]
    for field, values in variations.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"variations[{field!r}] must be a list of values, got {values!r}")
        for value in values:
            config = dataclasses.replace(base, **{field: value})
            if config not in configs:
                configs.append(config)
    return configs


def point_key(seed: int, config: Config):
    """The PRNG key of a configuration's networks: ``seed`` folded with a hash of its name."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(config.name.encode()) & 0x7FFFFFFF)


def pool_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool NHWC images (N, H, W, C) by ``factor`` in each spatial direction (H, W divisible by it)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"pool_images needs NHWC images (N, H, W, C), got shape {x.shape}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"images of {h}x{w} pixels cannot be pooled by {factor}")
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4)).astype(x.dtype)


# --------------------------------------------------------------------------
# Evaluation of one kernel.


def bootstrap_accuracy(correct, resamples: int = 2000, seed: int = 0) -> Dict[str, float]:
    """Accuracy of a boolean vector ``correct`` (N,) with its bootstrap standard error and 95% interval.

    Test points are resampled with replacement ``resamples`` times (a
    generator seeded with ``seed``); ``se`` is the standard deviation of the
    resampled accuracies, ``low``/``high`` their 2.5% and 97.5% percentiles.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 1 or correct.size == 0:
        raise ValueError(f"correct must be a non-empty vector of booleans, got shape {correct.shape}")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, size=(resamples, correct.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"accuracy": float(correct.mean()), "se": float(means.std(ddof=1)), "low": float(low), "high": float(high)}


def _correct(predictions, targets) -> np.ndarray:
    return np.argmax(predictions, axis=1) == np.argmax(targets, axis=1)


def evaluate_kernel(
    K_all,
    problem: Problem,
    *,
    validation_fraction: float = 0.2,
    ridges: Sequence[float] = RIDGES,
    resamples: int = 2000,
    seed: int = 0,
) -> Dict[str, object]:
    """Kernel ridge regression with the ridge chosen on a validation split; test accuracy with error bars.

    Args:
      K_all: kernel on the training then the test inputs, shape
        (N_train + N_test, N_train + N_test) (only the columns of the
        training inputs are read).
      problem: its training and test targets (one-hot, (N, k)).
      validation_fraction: the last ``round(validation_fraction * N_train)``
        training points are the validation split; the rest fit the model.
      ridges: relative ridges to try ([`infinite_width.limits.baselines.kernel_regression`][]).
      resamples: bootstrap resamples over test points
        ([`bootstrap_accuracy`][infinite_width.experiments.nnpk_ablation.bootstrap_accuracy]).
      seed: the seed of that bootstrap.

    Returns:
      ``ridge`` (chosen), ``validation_accuracy`` (at each ridge, NaN where the
      regularized kernel was not positive definite), ``test_accuracy``,
      ``test_accuracy_se``, ``test_accuracy_low``, ``test_accuracy_high``,
      ``test_mse``.
    """
    K_all = np.asarray(K_all, dtype=np.float64)
    n = problem.n_train
    if K_all.shape[0] != n + problem.n_test or K_all.shape[1] < n:
        raise ValueError(f"K_all must have shape ({n + problem.n_test}, >= {n}) for this problem, got {K_all.shape}")
    n_validation = int(round(validation_fraction * n))
    if not 0 < n_validation < n:
        raise ValueError(f"validation_fraction={validation_fraction} leaves no validation or no fitting points of {n}")
    n_fit = n - n_validation
    y_fit, y_validation = problem.y_train[:n_fit], problem.y_train[n_fit:]
    validation_accuracy = []
    for ridge in ridges:
        try:
            predictions = kernel_regression(K_all[:n_fit, :n_fit], y_fit, K_all[n_fit:n, :n_fit], ridge=ridge)
            validation_accuracy.append(float(_correct(predictions, y_validation).mean()))
        except np.linalg.LinAlgError:  # too small a ridge for a rank-deficient kernel
            validation_accuracy.append(float("nan"))
    # The best validation accuracy; ties go to the larger (safer) ridge. Then refit on all training points.
    order = sorted(range(len(ridges)), key=lambda i: (-np.nan_to_num(validation_accuracy[i], nan=-1.0), -ridges[i]))
    for i in order:
        try:
            predictions = kernel_regression(K_all[:n, :n], problem.y_train, K_all[n:, :n], ridge=ridges[i])
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise np.linalg.LinAlgError(f"no ridge of {list(ridges)} makes the kernel positive definite")
    scores = bootstrap_accuracy(_correct(predictions, problem.y_test), resamples, seed)
    return {
        "ridge": float(ridges[i]),
        "validation_accuracy": validation_accuracy,
        "test_accuracy": scores["accuracy"],
        "test_accuracy_se": scores["se"],
        "test_accuracy_low": scores["low"],
        "test_accuracy_high": scores["high"],
        "test_mse": float(losses.mse(predictions, problem.y_test)),
    }


# --------------------------------------------------------------------------
# The run.


def _prefix_count(networks: int) -> int:
    """How many m [`infinite_width.kernels.nnpk_prefixes`][] yields by default: powers of two below, and itself."""
    return networks.bit_length() + 1 - (1 if networks & (networks - 1) == 0 else 0)


def _check_problems(problems, configs) -> Dict[str, Problem]:
    if not isinstance(problems, Mapping):
        raise TypeError(f"problems must map families {tuple(FAMILIES)} to Problems, got {type(problems).__name__}")
    for family in {config.family for config in configs}:
        problem = problems.get(family)
        if not isinstance(problem, Problem):
            raise TypeError(f"problems[{family!r}] must be an infinite_width.Problem, got {type(problem).__name__}")
        wanted = "vector" if family == "mlp" else "image"
        if problem.input_kind != wanted:
            raise ValueError(
                f"problems[{family!r}] must have {wanted} inputs; got inputs of shape {problem.x_train.shape[1:]}"
                + (": flatten the images first" if family == "mlp" else ": keep the images NHWC")
            )
    return dict(problems)


def run(
    problems: Mapping[str, Problem],
    configs: Sequence[Config],
    out_dir: Union[str, os.PathLike],
    *,
    seed: int = 0,
    validation_fraction: float = 0.2,
    ridges: Sequence[float] = RIDGES,
    resamples: int = 2000,
    batch_size: Optional[int] = None,
    image_kernel_batch_size: Optional[int] = 100,
    progress: bool = True,
    finished_only: bool = False,
) -> List[Dict[str, object]]:
    """Run (or resume) an NNPK ablation; return one record per configuration and per reference.

    Args:
      problems: ``{"mlp": Problem with (N, d) inputs, "conv": Problem with
        (N, H, W, C) inputs}``; only the families of ``configs`` are needed.
      configs: the configurations (e.g. from
        [`one_factor_grid`][infinite_width.experiments.nnpk_ablation.one_factor_grid]).
      out_dir: folder of the per-configuration JSON files and summaries.
      seed: base seed of every configuration's key ([`point_key`][infinite_width.experiments.nnpk_ablation.point_key]).
      validation_fraction: as for [`evaluate_kernel`][infinite_width.experiments.nnpk_ablation.evaluate_kernel].
      ridges: as for [`evaluate_kernel`][infinite_width.experiments.nnpk_ablation.evaluate_kernel].
      resamples: as for [`evaluate_kernel`][infinite_width.experiments.nnpk_ablation.evaluate_kernel].
      batch_size: rows per forward pass of the networks (None: all at once).
      image_kernel_batch_size: rows per block of the closed-form kernels of
        image architectures, whose memory grows with the square of the pixel
        count (None: all at once). MLP kernels are computed at once.
      progress: a tqdm progress bar over configurations, and one over the
        networks of each.
      finished_only: compute nothing: return (and summarize) the records
        already in ``out_dir``, skipping the configurations and references
        not computed yet (a report on a run that was stopped).

    Each configuration record holds its fields, ``family``,
    ``has_closed_form``, ``prng``, ``curve`` (one
    [`evaluate_kernel`][infinite_width.experiments.nnpk_ablation.evaluate_kernel] result per m, with ``networks`` = m)
    and the timing of ``Clock`` (``seconds``, ``cpu_seconds``, ``load_start``,
    ``load_end``: wall and process CPU seconds, 1-minute load average). A
    reference record holds ``arch``, ``activation``, ``family``, ``kernel``
    (``"nngp"``, the closed form; or ``"linear"``, the linear kernel of the
    inputs, with ``arch="input"``), its evaluation and timing. Every
    reference appears once, the linear ones first.

    Raises ``ValueError`` if ``out_dir`` holds results of other data or settings.
    """
    configs = list(configs)
    if not configs or not all(isinstance(config, Config) for config in configs):
        raise TypeError("configs must be a non-empty list of Config")
    problems = _check_problems(problems, configs)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 2:
        raise ValueError(f"resamples must be an integer >= 2, got {resamples!r}")
    out_dir = Path(out_dir)
    evaluation = dict(validation_fraction=validation_fraction, ridges=tuple(ridges), resamples=resamples, seed=seed)
    settings_of = {
        family: {
            "format": _FORMAT_VERSION,
            **problem_settings(problem),
            "seed": int(seed),
            "validation_fraction": float(validation_fraction),
            "ridges": [float(r) for r in ridges],
            "resamples": resamples,
            "prng": kernels.DEFAULT_PRNG,
        }
        for family, problem in problems.items()
    }
    def reference(name, family, fields, compute_kernel):
        """The record of a reference kernel, read back or computed and stored in references/<name>.json."""
        path = out_dir / "references" / f"{name}.json"
        record = read_record(path, settings_of[family])
        if record is None and not finished_only:
            with Clock() as clock:
                record = {**fields, "family": family,
                          **evaluate_kernel(compute_kernel(), problems[family], **evaluation)}
            record.update(clock.record())
            write_record(path, settings_of[family], record)
        return record

    def inputs(problem):
        return np.concatenate([problem.x_train, problem.x_test])

    # The linear kernel of the inputs: what ridge regression on the raw pixels gets, without any network.
    found = [
        reference(f"linear-{family}", family, {"arch": "input", "activation": "linear", "kernel": "linear"},
                  lambda x=inputs(problems[family]).reshape(len(inputs(problems[family])), -1): x @ x.T)
        for family in FAMILIES if family in {config.family for config in configs}
    ]
    records = [record for record in found if record is not None]
    bar = tqdm(configs, desc="NNPK ablation", disable=not progress)
    for config in bar:
        bar.set_postfix_str(config.name)
        problem, settings = problems[config.family], settings_of[config.family]
        arch = config.architecture(problem.out_dim)
        x_all = inputs(problem)
        if arch.has_closed_form:
            blocks = image_kernel_batch_size if arch.input_kind == "image" else None
            record = reference(config.reference_name, config.family,
                               {"arch": config.arch, "activation": config.activation, "kernel": "nngp"},
                               lambda: kernels.nngp(arch, x_all, batch_size=blocks))
            if record is not None and record not in records:
                records.append(record)
        path = out_dir / "points" / f"{config.name}.json"
        record = read_record(path, settings)
        if record is None and finished_only:
            continue
        if record is None:
            with Clock() as clock:
                curve = []
                stream = kernels.nnpk_prefixes(
                    arch, x_all, width=config.width, networks=config.networks, key=point_key(seed, config),
                    init=config.init, batch_size=batch_size,
                )
                for m, K in tqdm(stream, desc=config.name, disable=not progress, leave=False,
                                 total=_prefix_count(config.networks)):
                    curve.append({"networks": m, **evaluate_kernel(K, problem, **evaluation)})
            record = {**dataclasses.asdict(config), "family": config.family, "kernel": "nnpk",
                      "has_closed_form": arch.has_closed_form, "prng": kernels.DEFAULT_PRNG, "curve": curve,
                      **clock.record()}
            write_record(path, settings, record)
        records.append(record)
    write_summary(records, out_dir)
    return records


# --------------------------------------------------------------------------
# Tables and the figure.

_ROW_FIELDS = (
    "family", "arch", "activation", "init", "width", "kernel", "networks", "ridge", "test_accuracy",
    "test_accuracy_se", "test_accuracy_low", "test_accuracy_high", "test_mse",
)


def summary_rows(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Flat rows: one per (configuration, m) of the NNPK and one per closed-form reference (``networks`` empty)."""
    rows = []
    for record in records:
        points = record["curve"] if record["kernel"] == "nnpk" else [record]
        for point in points:
            merged = {**record, **point}
            rows.append({field: merged.get(field, "") for field in _ROW_FIELDS})
    return rows


def write_summary(records: Sequence[Mapping], out_dir: Union[str, os.PathLike]) -> None:
    """``summary.json`` (the records) and ``summary.csv`` ([`summary_rows`][infinite_width.experiments.nnpk_ablation.summary_rows]) in ``out_dir``."""
    write_json(Path(out_dir) / "summary.json", list(records))
    write_csv(Path(out_dir) / "summary.csv", summary_rows(records), _ROW_FIELDS)


def final_rows(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """One row per configuration: NNPK accuracy at its largest m, the closed-form and linear references, timing."""
    references = {(r["arch"], r["activation"]): r for r in records if r["kernel"] == "nngp"}
    linear = {r["family"]: r for r in records if r["kernel"] == "linear"}
    score = lambda r: None if r is None else (r["test_accuracy"], r["test_accuracy_se"])
    rows = []
    for record in (r for r in records if r["kernel"] == "nnpk"):
        last = record["curve"][-1]
        reference = references.get((record["arch"], record["activation"]))
        rows.append({
            **{field: record[field] for field in ("family", "arch", "activation", "init", "width")},
            "networks": last["networks"],
            "nnpk": (last["test_accuracy"], last["test_accuracy_se"]),
            "nnpk_ridge": last["ridge"],
            "closed_form": score(reference),
            "linear": score(linear.get(record["family"])),
            "seconds": record["seconds"],
            "cpu_seconds": record["cpu_seconds"],
            "load": 0.5 * (record["load_start"] + record["load_end"]),
        })
    return rows


def markdown_table(records: Sequence[Mapping]) -> str:
    """A Markdown table of [`final_rows`][infinite_width.experiments.nnpk_ablation.final_rows]: accuracy ± bootstrap standard error of the NNPK, the closed form and
    the linear kernel of the inputs."""

    def accuracy(pair):
        return "--" if pair is None else f"{pair[0]:.3f} ± {pair[1]:.3f}"

    header = ("| family | arch | activation | init | width | m | NNPK accuracy | ridge | closed-form accuracy "
              "| linear (inputs) | wall s | CPU s | load |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = [
        f"| {r['family']} | {r['arch']} | {r['activation']} | {r['init']} | {r['width']} | {r['networks']} | "
        f"{accuracy(r['nnpk'])} | {r['nnpk_ridge']:.0e} | {accuracy(r['closed_form'])} | {accuracy(r['linear'])} | "
        f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['load']:.1f} |"
        for r in final_rows(records)
    ]
    return header + "\n".join(lines) + "\n"


def _panels(records: Sequence[Mapping]) -> List[Tuple[str, Mapping, List[Mapping]]]:
    """``(title, base, members)`` per family and varied field: the base and its one-factor variants along it
    (the base alone if it has none yet)."""
    panels = []
    nnpk_records = [r for r in records if r["kernel"] == "nnpk"]
    for family in FAMILIES:
        family_records = [r for r in nnpk_records if r["family"] == family]
        if not family_records:
            continue
        base = family_records[0]
        for field in ("arch", "init", "activation", "width"):
            members = [
                r for r in family_records[1:]
                if r[field] != base[field] and all(r[f] == base[f] for f in ("arch", "init", "activation", "width")
                                                   if f != field)
            ]
            if members:
                panels.append((f"{family.upper() if family == 'mlp' else 'conv'}: {field}", base, [base] + members))
        if not any(panel_base is base for _, panel_base, _ in panels):  # a run stopped after its base
            panels.append((f"{family.upper() if family == 'mlp' else 'conv'}: base", base, [base]))
    return panels


def _label(record: Mapping, base: Mapping, field: str) -> str:
    if record is base:
        return f"base {record['arch']} {record['activation']} {record['init']} w{record['width']}"
    value = f"w={record['width']}" if field == "width" else str(record[field])
    return value + ("" if record["has_closed_form"] else " (no closed form)")


def figure(records: Sequence[Mapping], title: str = ""):
    """Test accuracy against m (log scale) with bootstrap error bars: a panel per family and varied field.

    Closed-form references are dashed lines of the curve's colour; one legend
    for the figure. Returns a `matplotlib.figure.Figure`.
    """
    from infinite_width.experiments import figures

    panels = _panels(records)
    if not panels:
        raise ValueError("no NNPK records to plot")
    references = {(r["arch"], r["activation"]): r for r in records if r["kernel"] == "nngp"}
    linear = {r["family"]: r for r in records if r["kernel"] == "linear"}
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = figures.new_figure(rows, columns, sharey=True)
    colors: Dict[str, str] = {}
    for ax, (panel_title, base, members) in zip(axes.flat, panels):
        field = panel_title.split(": ")[1]
        for record in members:
            label = _label(record, base, field)
            color = colors.setdefault(label, figures.color(len(colors)))
            curve = record["curve"]
            ax.errorbar(
                [p["networks"] for p in curve], [p["test_accuracy"] for p in curve],
                yerr=[p["test_accuracy_se"] for p in curve], color=color, marker="o", markersize=3, capsize=2,
                linewidth=1.2, label=label,
            )
            reference = references.get((record["arch"], record["activation"]))
            if reference is not None and (record is base or field in ("arch", "activation")):
                ax.axhline(reference["test_accuracy"], color=color, linestyle="--", linewidth=1.0)
                ax.axhspan(reference["test_accuracy"] - reference["test_accuracy_se"],
                           reference["test_accuracy"] + reference["test_accuracy_se"], color=color, alpha=0.08)
        if base["family"] in linear:
            ax.axhline(linear[base["family"]]["test_accuracy"], color=figures.REFERENCE_COLOR, linestyle=":",
                       linewidth=1.0)
        ax.set_xscale("log", base=2)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("networks m")
        ax.grid(alpha=0.3, linewidth=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    figures.figure_legend(fig, axes.flat, columns=min(5, 2 * columns - 1),  # narrower figures, fewer columns
                          extra=[figures.reference_line("closed-form NNGP / CNN-GP (dashed, ± s.e. band)"),
                                 figures.reference_line("linear kernel of the inputs (dotted)", linestyle=":")])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
