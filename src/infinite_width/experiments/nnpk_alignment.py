"""Is the structure of a trained network present at initialization? (Amid et al. 2022, claim 2), resumable.

Claim 2 of Amid et al.: structures that manifest in a trained model are
already present at initialization. [`run`][infinite_width.experiments.nnpk_alignment.run] measures it with the centered
kernel alignment (CKA, [`infinite_width.kernels.kernel_alignment`][]) on
held-out points between

* the kernels of trained networks: the output kernel ``f f^T`` (logits) and
  the last-hidden-layer feature kernel ``phi phi^T``
  ([`infinite_width.finite.Network.features`][infinite_width.finite.networks.Network.features]), and
* kernels available before training:

  - ``nnpk``: the NNPK of the same architecture and width (the claim);
  - ``nngp``: its closed-form infinite-width limit (baseline a: does the
    NNPK explain more than the NNGP does?);
  - ``nnpk_other_arch``: the NNPK of a mismatched architecture (an MLP for a
    conv net, a conv net for an MLP; baseline b);
  - ``nnpk_other_activation``: the NNPK of the same architecture with
    another activation (baseline b);
  - ``input``: the linear kernel of the inputs ``x x^T`` (how much is already
    in the data);
  - ``init``: the same network's own kernel at its initialisation (how far
    training moved it);

and reports the kernel-target alignment (CKA with the label kernel ``y y^T``)
of every kernel. The NNPK is streamed ([`infinite_width.kernels.nnpk_prefixes`][]),
so its alignments are recorded at every power of two up to ``networks``.

Training ([`train_adam`][infinite_width.experiments.nnpk_alignment.train_adam]): plain Adam (optax, one global learning
rate) on the softmax cross-entropy, in the standard parametrization (Adam moves the
effective weights, as in ordinary deep-learning practice; the library's
width-scaled Adam of [`infinite_width.optim`][] is built for the
infinite-width limit instead, in which hidden features barely move), from
Gaussian initialisation, minibatches in epochs. The NNPK and the initial
networks use the same initialisation distribution.

Architectures: ``mlp2`` and ``conv2`` of
[`infinite_width.experiments.nnpk_ablation.architecture`][] (ReLU). Inputs
are NHWC images; the MLPs see them flattened.

Files in ``out_dir``: ``points/<arch>-w<width>.json`` (all seeds of one
trained model and its NNPK curve), ``kernels/<name>.npy`` (the fixed
kernels of the baselines on the held-out points), ``summary.json`` and
``summary.csv``. Re-running skips what is there.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from infinite_width import kernels, losses
from infinite_width._src.files import atomic_path
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import minibatch_indices
from infinite_width._src.records import Clock, problem_settings, read_record, write_csv, write_json, write_record
from infinite_width.experiments.nnpk_ablation import architecture
from infinite_width.finite.networks import network
from infinite_width.problem import Problem

__all__ = [
    "Training",
    "MODELS",
    "ARCHITECTURES",
    "CANDIDATES",
    "TARGETS",
    "train_adam",
    "run",
    "summary_rows",
    "markdown_table",
    "figure",
]

MODELS: Tuple[Tuple[str, int], ...] = (("mlp2", 64), ("mlp2", 256), ("mlp2", 1024), ("conv2", 16), ("conv2", 64))
"""The trained models ``(arch, width)`` by default."""
CANDIDATES: Tuple[str, ...] = ("nnpk", "nngp", "nnpk_other_arch", "nnpk_other_activation", "input", "init")
"""Kernels compared with the trained ones."""
TARGETS: Tuple[str, ...] = ("output", "features")
"""Kernels of the trained networks."""
_OTHER_ARCH = {"mlp2": "conv2", "conv2": "mlp2"}
ARCHITECTURES: Tuple[str, ...] = tuple(_OTHER_ARCH)
"""Architectures that can be trained and compared."""
# Width of the mismatched NNPKs (they do not depend on the trained width).
_BASELINE_WIDTH = {"mlp2": 512, "conv2": 64}
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Training:
    """Plain Adam on the softmax cross-entropy: ``steps`` minibatches of ``batch_size``, learning rate ``lr``."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3


def train_adam(net, x, y, *, key, training: Training = Training()):
    """Train one network from ``net.init(key)``: returns ``(initial params, trained params)``.

    ``net`` is a [`infinite_width.finite.Network`][] (use the standard
    parametrization for ordinary Adam), ``x`` (N, ...) inputs, ``y`` (N, k)
    one-hot targets. The minibatch order comes from ``key`` too.
    """
    init_key, batch_key = jax.random.split(key)
    x, y = jnp.asarray(x), jnp.asarray(y)
    batches = minibatch_indices(batch_key, x.shape[0], min(training.batch_size, x.shape[0]), training.steps)
    optimizer = optax.adam(training.lr)

    def loss(params, rows):
        return losses.cross_entropy(net.apply(params, x[rows]), y[rows])

    @jax.jit
    def fit(params, batches):
        def step(carry, rows):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params, rows), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), batches)
        return params

    with precision_scope("float32"):
        initial = net.init(init_key, tuple(x.shape[1:]))
        return initial, fit(initial, jnp.asarray(batches))


def _inputs_for(arch_name: str, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) if arch_name.startswith("mlp") else x


def model_key(seed: int, arch: str, width: int, replica: int):
    digest = zlib.crc32(f"{arch}-w{width}-seed{replica}".encode()) & 0x7FFFFFFF
    return jax.random.fold_in(jax.random.PRNGKey(seed), digest)


def _save_kernel(path: Path, kernel: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, np.asarray(kernel, np.float32))


def _cached_kernel(path: Path, compute) -> np.ndarray:
    if path.exists():
        return np.load(path)
    kernel = compute()
    _save_kernel(path, kernel)
    return kernel


def _check_arguments(problem, models, seeds, held_out):
    """Refuse, naming the argument, what [`run`][infinite_width.experiments.nnpk_alignment.run] cannot use."""
    if not isinstance(problem, Problem) or problem.input_kind != "image":
        raise ValueError("problem must be an infinite_width.Problem with NHWC image inputs (N, H, W, C)")
    for arch_name, width in models:
        if arch_name not in _OTHER_ARCH:
            raise ValueError(f"unknown trained architecture {arch_name!r}; expected one of {tuple(_OTHER_ARCH)}")
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"model widths must be integers >= 1, got {width!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    if isinstance(held_out, bool) or not isinstance(held_out, int) or not 2 < held_out <= problem.n_test:
        raise ValueError(f"held_out must be an integer in [3, n_test={problem.n_test}], got {held_out!r}")


def _cka(a, b):
    return kernels.kernel_alignment(a, b)


def _train_and_measure(net, arch_name, problem, x_eval, *, keys, training, progress):
    """Train one network per key; return their output and feature kernels (trained and initial) on
    ``x_eval`` (one dict per network) and their test accuracies."""
    x_train = _inputs_for(arch_name, problem.x_train)
    trained: List[Dict[str, np.ndarray]] = []
    test_accuracy = []
    for key in tqdm(keys, desc="training", disable=not progress, leave=False):
        initial, params = train_adam(net, x_train, problem.y_train, key=key, training=training)
        with precision_scope("float32"):
            outputs = np.asarray(net.apply(params, _inputs_for(arch_name, problem.x_test)))
            kernels_of = {}
            for when, p in (("trained", params), ("init", initial)):
                f = np.asarray(net.apply(p, x_eval), np.float64)
                phi = np.asarray(net.features(p, x_eval), np.float64)
                kernels_of[f"{when}_output"], kernels_of[f"{when}_features"] = f @ f.T, phi @ phi.T
        test_accuracy.append(float(np.mean(np.argmax(outputs, 1) == np.argmax(problem.y_test, 1))))
        trained.append(kernels_of)
    return trained, test_accuracy


def _alignments(trained, nnpk_kernel, baselines, label):
    """CKA of every trained kernel with every candidate, and of every kernel with the labels."""
    alignment = {
        target: {
            "nnpk": [_cka(t[f"trained_{target}"], nnpk_kernel) for t in trained],
            **{name: [_cka(t[f"trained_{target}"], baselines[name]) for t in trained]
               for name in ("nngp", "nnpk_other_arch", "nnpk_other_activation", "input")},
            "init": [_cka(t[f"trained_{target}"], t[f"init_{target}"]) for t in trained],
        }
        for target in TARGETS
    }
    label_alignment = {
        **{name: _cka(kernel, label) for name, kernel in baselines.items()},
        "nnpk": _cka(nnpk_kernel, label),
        **{f"{when}_{target}": [_cka(t[f"{when}_{target}"], label) for t in trained]
           for when in ("trained", "init") for target in TARGETS},
    }
    return alignment, label_alignment


def run(
    problem: Problem,
    out_dir: Union[str, os.PathLike],
    *,
    models: Sequence[Tuple[str, int]] = MODELS,
    seeds: int = 3,
    training: Training = Training(),
    held_out: int = 500,
    networks: int = 1024,
    other_activation: str = "erf",
    seed: int = 0,
    batch_size: Optional[int] = None,
    image_kernel_batch_size: Optional[int] = 100,
    progress: bool = True,
) -> List[Dict[str, object]]:
    """Run (or resume) the alignment study; return one record per trained model ``(arch, width)``.

    Args:
      problem: images (N, H, W, C) with one-hot targets; networks train on its
        training set and are compared on its first ``held_out`` test points.
      models: ``(arch, width)`` pairs, arch ``"mlp2"`` or ``"conv2"``.
      seeds: trained networks per model (independent initialisations and minibatch orders).
      training: the Adam run ([`Training`][infinite_width.experiments.nnpk_alignment.Training]).
      held_out: number of test points the kernels are compared on.
      networks: random networks of the NNPK (alignments at every power of two up to it).
      other_activation: activation of ``nnpk_other_activation`` (the trained networks use ReLU).
      seed: base seed of the training and NNPK keys.
      batch_size: rows per forward pass of the NNPK (None: all at once).
      image_kernel_batch_size: rows per block of the closed-form CNN-GP (its
        memory grows with the square of the pixel count); MLP kernels at once.
      progress: tqdm progress bars.

    A record holds ``arch``, ``width``, ``test_accuracy`` (per seed, on the
    whole test set), ``alignment[target][candidate]`` (per seed; targets
    [`TARGETS`][infinite_width.experiments.nnpk_alignment.TARGETS], candidates
    [`CANDIDATES`][infinite_width.experiments.nnpk_alignment.CANDIDATES], the NNPK at ``networks``),
    ``label_alignment[kernel]`` (per seed for the trained and initial kernels, one value for the fixed ones),
    ``nnpk_vs_nngp`` (CKA of the two), ``nnpk_curve`` (alignments against m) and the timing.
    """
    _check_arguments(problem, models, seeds, held_out)
    out_dir = Path(out_dir)
    settings = {
        "format": _FORMAT_VERSION,
        **problem_settings(problem),
        "seed": int(seed),
        "training": dataclasses.asdict(training),
        "held_out": held_out,
        "networks": int(networks),
        "other_activation": other_activation,
        "prng": kernels.DEFAULT_PRNG,
    }
    x_held, y_held = problem.x_test[:held_out], problem.y_test[:held_out]
    k = problem.out_dim
    kernel_dir = out_dir / "kernels"

    def fixed(name, arch_name, activation, width):
        """A baseline kernel on the held-out points, computed once and kept in kernels/."""
        arch = architecture(arch_name, activation, k)
        x = _inputs_for(arch_name, x_held)
        if name == "nngp":
            blocks = image_kernel_batch_size if arch.input_kind == "image" else None
            return _cached_kernel(kernel_dir / f"nngp-{arch_name}-{activation}.npy",
                                  lambda: kernels.nngp(arch, x, batch_size=blocks))
        return _cached_kernel(
            kernel_dir / f"nnpk-{arch_name}-{activation}-w{width}-m{networks}.npy",
            lambda: kernels.nnpk(arch, x, width=width, networks=networks, key=seed, batch_size=batch_size),
        )

    label = y_held @ y_held.T
    records = []
    bar = tqdm(models, desc="alignment", disable=not progress)
    for arch_name, width in bar:
        bar.set_postfix_str(f"{arch_name} w{width}")
        path = out_dir / "points" / f"{arch_name}-w{width}.json"
        record = read_record(path, settings)
        if record is not None:
            records.append(record)
            continue
        with Clock() as clock:
            arch = architecture(arch_name, "relu", k)
            other = _OTHER_ARCH[arch_name]
            baselines = {
                "nngp": fixed("nngp", arch_name, "relu", None),
                "nnpk_other_arch": fixed("nnpk", other, "relu", _BASELINE_WIDTH[other]),
                "nnpk_other_activation": fixed("nnpk", arch_name, other_activation, _BASELINE_WIDTH[arch_name]),
                "input": (lambda z: z @ z.T)(x_held.reshape(held_out, -1).astype(np.float64)),
            }
            net = network(arch, int(width), parametrization="standard")
            x_eval = _inputs_for(arch_name, x_held)
            keys = [model_key(seed, arch_name, width, replica) for replica in range(seeds)]
            trained, test_accuracy = _train_and_measure(net, arch_name, problem, x_eval, keys=keys,
                                                        training=training, progress=progress)
            curve = []
            stream = kernels.nnpk_prefixes(arch, x_eval, width=int(width), networks=networks, key=seed,
                                           batch_size=batch_size)
            for m, K in stream:
                curve.append({
                    "networks": m,
                    **{f"{target}": [_cka(t[f"trained_{target}"], K) for t in trained] for target in TARGETS},
                    "label": _cka(K, label),
                    "nngp": _cka(K, baselines["nngp"]),
                })
            nnpk_kernel = K
            alignment, label_alignment = _alignments(trained, nnpk_kernel, baselines, label)
        record = {
            "arch": arch_name, "width": int(width), "seeds": seeds, "test_accuracy": test_accuracy,
            "alignment": alignment, "label_alignment": label_alignment,
            "nnpk_vs_nngp": _cka(nnpk_kernel, baselines["nngp"]), "nnpk_curve": curve, "prng": kernels.DEFAULT_PRNG,
            **clock.record(),
        }
        write_record(path, settings, record)
        records.append(record)
    write_summary(records, out_dir)
    return records


# --------------------------------------------------------------------------
# Tables and the figure.


def _mean_std(values) -> Tuple[float, float]:
    values = np.atleast_1d(np.asarray(values, np.float64))
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def summary_rows(records: Sequence[Mapping]) -> List[Dict[str, object]]:
    """Flat rows ``(arch, width, measure, target, kernel, mean, std over seeds, seeds)``.

    ``measure`` is ``"cka"`` (``target`` a trained kernel, ``kernel`` a
    candidate), ``"kta"`` (alignment of ``kernel`` with the labels) or
    ``"test_accuracy"`` of the trained networks.
    """
    rows = []
    for record in records:
        base = {"arch": record["arch"], "width": record["width"]}

        def add(measure, target, kernel, values):
            mean, std = _mean_std(values)
            rows.append({**base, "measure": measure, "target": target, "kernel": kernel, "mean": mean, "std": std,
                         "seeds": int(np.size(values))})

        add("test_accuracy", "", "trained", record["test_accuracy"])
        for target, candidates in record["alignment"].items():
            for kernel, values in candidates.items():
                add("cka", target, kernel, values)
        for kernel, values in record["label_alignment"].items():
            add("kta", "label", kernel, values)
        add("cka", "nngp", "nnpk", record["nnpk_vs_nngp"])
    return rows


def write_summary(records: Sequence[Mapping], out_dir: Union[str, os.PathLike]) -> None:
    """``summary.json`` (the records) and ``summary.csv`` ([`summary_rows`][infinite_width.experiments.nnpk_alignment.summary_rows]) in ``out_dir``."""
    rows = summary_rows(records)
    write_json(Path(out_dir) / "summary.json", list(records))
    write_csv(Path(out_dir) / "summary.csv", rows, list(rows[0]))


def markdown_table(records: Sequence[Mapping], target: str) -> str:
    """CKA of the trained ``target`` kernel (``"output"`` or ``"features"``) with each candidate, mean ± std over seeds."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    header = "| model | test acc. | " + " | ".join(CANDIDATES) + " | KTA trained | KTA NNPK |\n"
    header += "|---|" + "---:|" * (len(CANDIDATES) + 3) + "\n"

    def cell(values):
        mean, std = _mean_std(values)
        return f"{mean:.3f} ± {std:.3f}"

    lines = []
    for r in records:
        cells = [cell(r["alignment"][target][name]) for name in CANDIDATES]
        lines.append(
            f"| {r['arch']} w{r['width']} | {cell(r['test_accuracy'])} | " + " | ".join(cells)
            + f" | {cell(r['label_alignment'][f'trained_{target}'])} | {r['label_alignment']['nnpk']:.3f} |"
        )
    return header + "\n".join(lines) + "\n"


_CANDIDATE_LABELS = {
    "nnpk": "NNPK (same arch.)",
    "nngp": "NNGP / CNN-GP (same arch.)",
    "nnpk_other_arch": "NNPK (other arch.)",
    "nnpk_other_activation": "NNPK (other activation)",
    "input": "input x x^T",
    "init": "same network at init",
}


def figure(records: Sequence[Mapping], title: str = ""):
    """CKA of the trained output and feature kernels with each candidate (bars, ± std over seeds),
    the label alignment of every kernel, and the NNPK's CKA against m. One legend."""
    from infinite_width.experiments import figures

    if not records:
        raise ValueError("no alignment records to plot")
    fig, axes = figures.new_figure(1, 4, panel_size=(3.9, 3.1))
    models = [f"{r['arch']} w{r['width']}" for r in records]
    positions = np.arange(len(records))
    bar_width = 0.8 / len(CANDIDATES)
    for ax, target in zip(axes[0][:2], TARGETS):
        for i, name in enumerate(CANDIDATES):
            stats = [_mean_std(r["alignment"][target][name]) for r in records]
            ax.bar(positions + (i - (len(CANDIDATES) - 1) / 2) * bar_width, [s[0] for s in stats], bar_width,
                   yerr=[s[1] for s in stats], color=figures.color(i), capsize=1.5, label=_CANDIDATE_LABELS[name])
        ax.set_title(f"CKA with the trained {target} kernel", fontsize=9)
    ax = axes[0][2]
    kinds = [("trained_output", "trained output", figures.REFERENCE_COLOR), ("trained_features", "trained features", "0.5"),
             ("nnpk", None, figures.color(0)), ("nngp", None, figures.color(1)), ("input", None, figures.color(4))]
    kind_width = 0.8 / len(kinds)
    for i, (name, label, color) in enumerate(kinds):
        stats = [_mean_std(r["label_alignment"][name]) for r in records]
        ax.bar(positions + (i - (len(kinds) - 1) / 2) * kind_width, [s[0] for s in stats], kind_width,
               yerr=[s[1] for s in stats], color=color, capsize=1.5, label=label)
    ax.set_title("alignment with the labels y y^T", fontsize=9)
    for ax in axes[0][:3]:
        ax.set_xticks(positions, models, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    axes[0][0].set_ylabel("centered kernel alignment")
    ax = axes[0][3]
    for j, r in enumerate(records):
        curve = r["nnpk_curve"]
        stats = [_mean_std(point["features"]) for point in curve]
        ax.errorbar([p["networks"] for p in curve], [s[0] for s in stats], yerr=[s[1] for s in stats],
                    color=figures.color(len(CANDIDATES) + j), marker="o", markersize=3, capsize=2, linewidth=1.2,
                    label=f"NNPK vs trained features, {models[j]}")
        ax.axhline(_mean_std(r["alignment"]["features"]["nngp"])[0], color=figures.color(len(CANDIDATES) + j),
                   linestyle="--", linewidth=1.0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("networks m of the NNPK")
    ax.set_title("CKA with trained features against m", fontsize=9)
    ax.grid(alpha=0.3, linewidth=0.5)
    figures.figure_legend(fig, axes.flat, columns=4, extra=[figures.reference_line("NNGP / CNN-GP level (dashed)")])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
