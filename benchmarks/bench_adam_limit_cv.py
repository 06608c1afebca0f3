"""Variance of the Adam-like limit's predictions removed by the first-moment control variate, and its cost.

Each sample m contributes ``X_m = coef U_m V_m A_m`` to a term (``A = sum_s lr
Q_s``, the accumulated Adam direction). Adam's first moment is linear in the
past gradients, so ``Y_m = coef U_m V_m L_m`` with ``L = sum_s lr m_hat_s``
(``raw``), or ``sum_s lr m_hat_s / sigma_s`` with ``sigma_s`` the replica's RMS
second moment at step s (``normalized``: weighted over the steps as Adam weights
them), has a closed-form mean given the replica's ``chi`` history: the term's
kernel applied to the exponential average of ``chi``
(``engine_variants.simulate_with_control_variates``). The controlled estimate of
a replica is ``f + sum_terms a_term (mean_m Y_m - E[Y])``.

This runs two independent calls of R replicas each (a pilot and an evaluation,
their own keys) on one of ``bench_adam_limit.py``'s configurations and
reports, per recorded step and kind of control variate, the fraction of the
variance of one replica's test predictions that is removed:

* ``pilot``: one coefficient per term, fitted on the pilot's replicas (all
  points, pooled least squares across replicas) and applied to the evaluation's:
  unbiased, and the evaluation's replicas stay independent (what an engine
  would do with a pilot run);
* ``leave_one_out``: each evaluation replica's coefficients fitted on the other
  evaluation replicas (no pilot; replicas share data through the coefficients);
* ``in_sample``: fitted and evaluated on the same replicas (an upper bound);
* ``per_term``: each term's control variate alone (pilot coefficients);

with bootstrap intervals over the evaluation's replicas; the equivalent gain in
samples ``1 / (1 - removed)``; whether the means stay the same (the
evaluation's ``mean(Y) - E[Y]`` over replicas in standard errors, and the
controlled and plain means compared along the prediction and as an offset);
and the seconds of the steps and of the control variate's bookkeeping.

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_cv.py --config full-batch
    python benchmarks/bench_adam_limit_cv.py --config minibatch --variant 512:512/chunk=1024

Writes ``bench_adam_limit_cv_<config>_m<per replica>.json`` under ``--out`` (default docs/);
each call's raw results are kept under ``--work`` (a rerun reuses them).
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import re
import time

import numpy as np

import adam_limit_common as common
import engine_variants
import infinite_width as iw
from bench_adam_limit import CONFIGS, FINITE_KEY

BOOTSTRAPS = 400
KINDS = ("raw", "normalized")


def run_call(problem, config, variant_name, per_replica, replicas, key, record, work, schedule=None):
    """One call's ``ControlVariateRun`` (predictions, differences, seconds), cached under ``work``.

    With ``schedule`` (``t -> {term: a}``), the steps are corrected by the control variates
    (``in_step``): each replica is then run alone (key ``key_for(key, replica)``) and the replicas are stacked.
    """
    tag = "instep" if schedule is not None else "cv"
    path = os.path.join(work, f"{tag}_{variant_name.replace('/', '_').replace(':', '-')}_m{per_replica}_r{replicas}"
                              f"_k{key}_t{len(record)}.pkl")
    if not os.path.exists(path):
        rows = iw.workflow.minibatch_order(FINITE_KEY, config["n_train"], config["batch_size"], config["steps"])
        variant = engine_variants.parse_variant(variant_name)
        start = time.perf_counter()
        calls = [(key, replicas)] if schedule is None else [(engine_variants.key_for(key, r), 1)
                                                             for r in range(replicas)]
        runs, draw_seconds = [], 0.0
        for call_key, count in calls:
            drawn = engine_variants.draw(problem.arch, problem.x_all, key=call_key, replicas=count,
                                         per_replica=per_replica, variant=variant)
            draw_seconds += drawn.seconds
            runs.append(engine_variants.simulate_with_control_variates(
                problem.arch, problem.optimizer, drawn, problem.x_all, problem.data.y_train, rows, record,
                in_step=schedule))
            del drawn
        seconds = {name: sum(run.seconds[name] for run in runs) for name in runs[0].seconds}
        saved = dict(predictions=np.concatenate([run.predictions for run in runs]),
                     differences={kind: {name: np.concatenate([run.differences[kind][name] for run in runs])
                                         for name in runs[0].differences[kind]} for kind in KINDS},
                     seconds=dict(seconds, draw=draw_seconds, call=time.perf_counter() - start),
                     load_average=os.getloadavg())
        with open(path + ".tmp", "wb") as handle:
            pickle.dump(saved, handle)
        os.replace(path + ".tmp", path)
    with open(path, "rb") as handle:
        return pickle.load(handle)


def coefficient_schedule(pilot, names, record):
    """``t -> {term: a}``: the pilot's normalized coefficients at each recorded step, linearly interpolated."""
    steps = [step for step in record if step > 0]
    table = np.array([fitted_coefficients(*design(pilot, "normalized", record.index(step), names)) for step in steps])

    def schedule(t):
        return {name: float(np.interp(t, steps, table[:, i])) for i, name in enumerate(names)}

    return schedule


def reference_of(pattern, smallest):
    """(mean (Nt, k), its variance (Nt, k)) of the floor benchmark's saved replicas ``<pattern>_m<m>_c*.npz`` with
    m >= ``smallest`` (sample-weighted pool of the last step's test predictions)."""
    parts = []
    for path in sorted(glob.glob(f"{pattern}_m*_c*.npz")):
        m = int(re.search(r"_m(\d+)_c\d+\.npz$", path).group(1))
        if m >= smallest:
            parts.append((m, np.load(path)["test"]))
    total = sum(m * reps.shape[0] for m, reps in parts)
    mean = sum(m * reps.sum(axis=0) for m, reps in parts) / total
    variance = sum(m**2 * reps.shape[0] * np.var(reps, axis=0, ddof=1) for m, reps in parts) / total**2
    return mean, variance


def against_reference(replicas, reference, per_replica):
    """m Var of one replica, the relative RMS bias (noise removed) and the scale along the reference minus 1
    (with its standard error) of (R, Nt, k) replica predictions."""
    target, target_variance = reference
    scale = float(np.mean(target**2))
    variance = np.var(replicas, axis=0, ddof=1)
    bias2 = (np.mean((replicas.mean(axis=0) - target) ** 2) - np.mean(variance) / replicas.shape[0]
             - np.mean(target_variance)) / scale
    along = np.tensordot(replicas, target, axes=2) / np.sum(target**2)
    return dict(m_var=float(per_replica * np.mean(variance) / scale), bias2=float(bias2),
                scale_minus_one=float(along.mean() - 1), scale_stderr=float(along.std(ddof=1) / np.sqrt(along.size)))


def design(run, kind, step, names):
    """(f (R, n), D (R, n, terms)): the replicas' predictions and each term's difference, flattened over points."""
    f = run["predictions"][:, step].reshape(run["predictions"].shape[0], -1)
    D = np.stack([run["differences"][kind][name][:, step].reshape(f.shape) for name in names], axis=-1)
    return f, D


def fitted_coefficients(f, D):
    """Coefficients a (terms,) minimizing the spread of ``f + D a`` across replicas, pooled over points."""
    fc, Dc = f - f.mean(axis=0), D - D.mean(axis=0)
    gram = np.einsum("rni,rnj->ij", Dc, Dc)
    return np.linalg.solve(gram + 1e-12 * np.trace(gram) * np.eye(gram.shape[0]), -np.einsum("rni,rn->i", Dc, fc))


def removed_fraction(f, controlled, points, scale, rng=None):
    """1 - (variance of the controlled replicas) / (variance of the plain ones) on ``points``; ``rng``: bootstrap."""
    if rng is not None:
        pick = rng.integers(0, f.shape[0], f.shape[0])
        f, controlled = f[pick], controlled[pick]
    plain = engine_variants.relative_variance(f[:, points], scale)
    if plain == 0.0:  # a resample of one replica repeated
        return float("nan")
    return 1.0 - engine_variants.relative_variance(controlled[:, points], scale) / plain


def summary_of(values, rng_values):
    return dict(value=values, interval=np.nanpercentile(rng_values, [2.5, 97.5]).tolist())


def analyse(pilot, evaluation, names, n_train, record, analysed, per_replica):
    """Per step of ``analysed`` (of ``record``) and kind: the removed fractions (pilot, leave-one-out, in-sample,
    per term) and checks."""
    rng = np.random.default_rng(0)
    results = []
    for step in analysed:
        index = record.index(step)
        f_eval = evaluation["predictions"][:, index].reshape(evaluation["predictions"].shape[0], -1)
        k = evaluation["predictions"].shape[-1]
        test = np.arange(n_train * k, f_eval.shape[1])  # flattened (point, output) indices of the test points
        scale = float(np.mean(np.mean(f_eval[:, test], axis=0) ** 2))
        plain_variance = engine_variants.relative_variance(f_eval[:, test], scale)
        row = dict(step=step, plain_m_var=per_replica * plain_variance)
        for kind in KINDS:
            f_pilot, D_pilot = design(pilot, kind, index, names)
            f_eval, D_eval = design(evaluation, kind, index, names)
            a = fitted_coefficients(f_pilot, D_pilot)
            controlled = f_eval + D_eval @ a
            boot = [removed_fraction(f_eval, controlled, test, scale, rng) for _ in range(BOOTSTRAPS)]
            loo = np.stack([f_eval[r] + D_eval[r] @ fitted_coefficients(np.delete(f_eval, r, 0),
                                                                        np.delete(D_eval, r, 0))
                            for r in range(f_eval.shape[0])])
            in_sample = f_eval + D_eval @ fitted_coefficients(f_eval, D_eval)
            per_term = {}
            for i, name in enumerate(names):
                alone = fitted_coefficients(f_pilot, D_pilot[..., i:i + 1])
                per_term[name] = removed_fraction(f_eval, f_eval + D_eval[..., i:i + 1] @ alone, test, scale)
            removed = removed_fraction(f_eval, controlled, test, scale)
            D_mean = D_eval.mean(axis=0)
            D_stderr = D_eval.std(axis=0, ddof=1) / np.sqrt(D_eval.shape[0])
            row[kind] = dict(
                coefficients=dict(zip(names, a.tolist())),
                pilot=summary_of(removed, boot), samples_gain=1.0 / (1.0 - removed),
                leave_one_out=removed_fraction(f_eval, loo, test, scale),
                in_sample=removed_fraction(f_eval, in_sample, test, scale),
                per_term=per_term,
                # unbiasedness: mean(Y) - E[Y] over replicas, RMS over points and terms in standard errors (~1)
                difference_rms_z=float(np.sqrt(np.mean((D_mean / D_stderr) ** 2))),
                mean_shift=mean_shift(f_eval[:, test], controlled[:, test]))
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def mean_shift(plain, controlled):
    """The controlled mean against the plain one on the same replicas: scale along the plain mean and constant
    offset (relative to its RMS), each as (difference, its standard error from the replicas' paired spread)."""
    direction = plain.mean(axis=0)
    rms = np.sqrt(np.mean(direction**2))
    out = {}
    for name, functional in (("scale", lambda f: f @ direction / (direction @ direction)),
                             ("offset", lambda f: np.mean(f - direction, axis=1) / rms)):
        paired = functional(controlled) - functional(plain)  # (R,): same replicas, so the difference is paired
        out[name] = (float(paired.mean()), float(paired.std(ddof=1) / np.sqrt(paired.size)))
    return out


def main():
    parser = common.parser(__doc__.split("\n")[0], replicas=8)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full-batch")
    parser.add_argument("--variant", default="exact", help="how the fields are drawn (engine_variants.parse_variant)")
    parser.add_argument("--per-replica", type=int, default=2048)
    parser.add_argument("--keys", type=int, nargs=2, default=[101, 102], metavar=("PILOT", "EVALUATION"))
    parser.add_argument("--in-step", action="store_true",
                        help="also run the evaluation with every step's chi from the controlled predictions")
    parser.add_argument("--reference", metavar="PATTERN:M",
                        help="the floor benchmark's saved replicas to measure bias against, e.g. "
                             "/tmp/bench_adam_limit_floor/minibatch/exact:8192 (those with m >= M)")
    parser.add_argument("--work", default="/tmp/bench_adam_limit_cv")
    args = parser.parse_args()
    config = CONFIGS[args.config]
    problem = common.setup(config["n_train"], config["n_test"], args.data_dir)
    header = common.metadata()
    steps = config["steps"]
    record = list(range(steps // 10, steps + 1, steps // 10))
    work = os.path.join(args.work, args.config)
    os.makedirs(work, exist_ok=True)
    pilot, evaluation = (run_call(problem, config, args.variant, args.per_replica, args.replicas, key, record, work)
                         for key in args.keys)
    names = list(evaluation["differences"]["raw"])
    analysed = sorted({steps // 10, steps // 2, steps})
    results = analyse(pilot, evaluation, names, config["n_train"], record, analysed, args.per_replica)
    summary = dict(header, load_average_after=os.getloadavg(),
                   config=common.described(args, problem.optimizer, problem=config, record=record,
                                           batch_order=FINITE_KEY),
                   variant=engine_variants.parse_variant(args.variant).describe(),
                   seconds=dict(pilot=pilot["seconds"], evaluation=evaluation["seconds"]), results=results)
    if args.in_step:
        schedule = coefficient_schedule(pilot, names, record)
        corrected = run_call(problem, config, args.variant, args.per_replica, args.replicas, args.keys[1], record,
                             work, schedule=schedule)
        n = config["n_train"]
        last = {"plain": evaluation["predictions"][:, -1, n:],
                "post-hoc": controlled(evaluation, names, schedule(steps))[:, n:],
                "in-step": controlled(corrected, names, schedule(steps))[:, n:]}
        summary["seconds"]["in_step"] = corrected["seconds"]
        if args.reference:
            pattern, smallest = args.reference.rsplit(":", 1)
            reference = reference_of(pattern, int(smallest))
            summary["in_step"] = {name: against_reference(value, reference, args.per_replica)
                                  for name, value in last.items()}
        else:
            scale = float(np.mean(last["plain"].mean(axis=0) ** 2))
            summary["in_step"] = {name: dict(m_var=args.per_replica * engine_variants.relative_variance(value, scale))
                                  for name, value in last.items()}
        print(json.dumps(summary["in_step"], indent=1), flush=True)
    tag = f"{args.config}_m{args.per_replica}"
    common.write_json(summary, args.out, f"bench_adam_limit_cv_{tag}.json")


def controlled(run, names, coefficients):
    """(R, P, k) controlled predictions at the last recorded step: ``f + sum_terms a (mean Y - E[Y])`` (normalized)."""
    return run["predictions"][:, -1] + sum(coefficients[name] * run["differences"]["normalized"][name][:, -1]
                                           for name in names)


if __name__ == "__main__":
    main()
