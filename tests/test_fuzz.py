"""Fuzz suite (issues 9 and 24): malformed arrays, numbers, options and files against every public entry point.

Each example corrupts ONE argument of an otherwise valid call (a NaN or Inf
entry, a value beyond float32, a wrong rank or feature count, an empty axis,
strings, complex numbers, bools, None, a bad number, an unknown option, a
damaged file) and asserts that the call raises ``ValueError`` or ``TypeError``
(or the documented file errors) whose message names that argument, before
any computation: never a bare jax, numpy or zip exception, and never a NaN
passed off as a result. Since every call fails in its checks, nothing is
compiled and the whole file runs in seconds.

Issue 24 added four classes, each fuzzed as a class rather than case by case:
sizes that must be planned (huge ``steps`` with and without minibatches),
file formats (several corruptions at once, npy headers that lie, idx headers
that claim too much), seeds, and comparisons across problems.
"""

import gzip
import math
import shutil
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infinite_width as iw
from infinite_width import datasets
from infinite_width.datasets import DatasetFileError
from infinite_width.workflow.trajectory import TrajectoryFileError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

N, NT, D, K = 6, 3, 4, 2
ARCH = iw.mlp(1, "relu", 1.5, 0.1, out_dim=K)
RNG = np.random.default_rng(0)
X, XT = RNG.standard_normal((N, D)), RNG.standard_normal((NT, D))
Y, YT = np.eye(K)[np.arange(N) % K], np.eye(K)[np.arange(NT) % K]
PROBLEM = iw.Problem(X, Y, XT, YT)


def _with(array, index, value):
    array = np.array(array, dtype=np.float64)
    array.flat[index % array.size] = value
    return array


@st.composite
def bad_arrays(draw, shape, float32=True):
    """An array meant to have ``shape`` (2-D, float32 unless not ``float32``), corrupted in one way."""
    rows, columns = shape
    valid = RNG.standard_normal(shape)
    index = draw(st.integers(0, rows * columns - 1))
    return draw(st.sampled_from([
        _with(valid, index, math.nan),
        _with(valid, index, -math.inf),
        _with(valid, index, 1e39 if float32 else math.nan),  # finite in float64, Inf in float32
        valid.ravel(),  # rank 1
        valid[None],  # rank 3
        valid[:, :0],  # no features
        valid[:0],  # no rows
        np.hstack([valid, valid[:, :1]]),  # one feature too many
        valid.astype(np.complex64),
        valid > 0,  # bools are not numbers
        valid.astype(str),
        np.array([[1.0, 2.0], [3.0]], dtype=object),  # ragged
        None,
        "abc",
    ]))


BAD_INTS = st.sampled_from([0, -1, 1.5, math.nan, math.inf, "3", None, True, [2]])
BAD_OPTIONS = st.sampled_from(["bogus", "", "NTK ", None, 3, ["ntk"]])


def _raises_naming(name, call, errors=(ValueError, TypeError)):
    """``call()`` raises one of ``errors`` and the message names ``name``; a result is a failure."""
    with pytest.raises(errors) as caught:
        result = call()
        pytest.fail(f"no error for a bad {name}; got {result!r}")
    assert name in str(caught.value), f"{type(caught.value).__name__} does not name {name!r}: {caught.value}"
    return caught.value


# --------------------------------------------------------------------------------------------------- kernels

KERNELS = (iw.kernels.nngp, iw.kernels.ntk, iw.kernels.nngp_and_ntk)


@FUZZ
@given(kernel=st.sampled_from(KERNELS), which=st.sampled_from(["x1", "x2"]), data=st.data())
def test_kernels_name_a_malformed_input(kernel, which, data):
    bad = data.draw(bad_arrays((N, D) if which == "x1" else (NT, D)))
    x1, x2 = (bad, XT) if which == "x1" else (X, bad)
    if which == "x2" and bad is None:  # x2=None means x2 = x1
        return
    _raises_naming(which, lambda: kernel(ARCH, x1, x2))


@FUZZ
@given(kernel=st.sampled_from(KERNELS), option=st.sampled_from(["batch_size", "dtype", "max_memory_bytes"]),
       data=st.data())
def test_kernels_name_a_bad_option(kernel, option, data):
    value = data.draw(BAD_OPTIONS if option == "dtype" else BAD_INTS.filter(lambda v: v is not None))
    if option == "batch_size" and value == 0:  # documented: 0 means no blocks
        return
    _raises_naming(option, lambda: kernel(ARCH, X, **{option: value}))


@FUZZ
@given(which=st.sampled_from(["x1", "x2", "width", "networks", "key", "init", "parametrization", "normalize",
                              "prng", "dtype", "batch_size", "network_chunk"]), data=st.data())
def test_nnpk_names_a_bad_argument(which, data):
    arguments = dict(x1=X, x2=XT, width=4, networks=2, key=0)
    if which in ("x1", "x2"):
        arguments[which] = data.draw(bad_arrays((N, D) if which == "x1" else (NT, D)))
        if which == "x2" and arguments["x2"] is None:
            return
    elif which in ("width", "networks", "batch_size", "network_chunk"):
        arguments[which] = data.draw(BAD_INTS.filter(lambda v: v is not None or which in ("width", "networks")))
    elif which == "key":
        arguments[which] = data.draw(st.sampled_from(["abc", 1.5, None, [1, 2, 3], np.zeros((2, 2))]))
    else:
        arguments[which] = data.draw(BAD_OPTIONS)
    x1, x2 = arguments.pop("x1"), arguments.pop("x2")
    _raises_naming(which, lambda: iw.kernels.nnpk(ARCH, x1, x2, **arguments))


@FUZZ
@given(data=st.data())
def test_max_learning_rate_names_a_bad_kernel(data):
    kernel = data.draw(bad_arrays((N, N), float32=False))
    _raises_naming("ntk_train_train", lambda: iw.kernels.max_learning_rate(kernel, out_dim=K))


# ------------------------------------------------------------------------------------------ problem and solve

@FUZZ
@given(which=st.sampled_from(["x_train", "y_train", "x_test", "y_test"]), data=st.data())
def test_problem_names_a_malformed_array(which, data):
    shapes = dict(x_train=(N, D), y_train=(N, K), x_test=(NT, D), y_test=(NT, K))
    arguments = dict(x_train=X, y_train=Y, x_test=XT, y_test=YT)
    arguments[which] = data.draw(bad_arrays(shapes[which]))
    if which in ("x_test", "y_test") and isinstance(arguments[which], np.ndarray) and arguments[which].shape[0] == 0:
        return  # a problem without test points is allowed (Nt may be 0)
    _raises_naming(which, lambda: iw.Problem(**arguments))


METHODS = {
    "Finite": lambda: iw.Finite(4),
    "KernelDynamics": lambda: iw.KernelDynamics(),
    "AdamLimit": lambda: iw.AdamLimit(samples=8, replicas=2),
    "Posterior": lambda: iw.Posterior(),
    "KernelRidge": lambda: iw.KernelRidge(),
}
METHOD_OPTIONS = {
    "Finite": dict(width=BAD_INTS, seeds=BAD_INTS, parametrization=BAD_OPTIONS, init=BAD_OPTIONS,
                   centered=st.sampled_from(["yes", 1, None])),
    "KernelDynamics": dict(time=BAD_OPTIONS, dtype=BAD_OPTIONS),
    "AdamLimit": dict(samples=BAD_INTS, replicas=BAD_INTS, storage_dtype=BAD_OPTIONS, rank=BAD_INTS.filter(
        lambda v: v is not None), features=BAD_INTS.filter(lambda v: v != 0), block_rows=BAD_INTS.filter(
        lambda v: v is not None)),
    "Posterior": dict(ridge=st.sampled_from([-1.0, math.nan, math.inf, "1e-3", None, True]),
                      dtype=BAD_OPTIONS),
    "KernelRidge": dict(kernel=BAD_OPTIONS, ridge=st.sampled_from([-1.0, math.nan, "x", True]),
                        dtype=BAD_OPTIONS),
}


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), data=st.data())
def test_method_objects_name_a_bad_option(method, data):
    option = data.draw(st.sampled_from(sorted(METHOD_OPTIONS[method])))
    value = data.draw(METHOD_OPTIONS[method][option])
    cls = type(METHODS[method]())
    base = dict(width=4) if method == "Finite" else dict(samples=8, replicas=2) if method == "AdamLimit" else {}
    if method == "AdamLimit" and option == "replicas" and value == 0:
        value = 3  # 8 samples are not a multiple of 3: the message names replicas
    _raises_naming(option, lambda: cls(**{**base, option: value}))


SOLVE_ARGUMENTS = dict(
    steps=BAD_INTS.filter(lambda v: v != 0),  # 0 steps is allowed
    batch_size=st.sampled_from([0, -1, 1.5, "4", True, N + 1]),
    record=st.sampled_from([[], [-1], [3], [0.5], "all", [[0, 1]]]),
    key=st.sampled_from(["abc", 1.5, [1, 2, 3], 2**64, -1, np.zeros(2, np.float32), np.array([1, 2])]),  # None: 0
    readout_only=st.sampled_from(["yes", 1, None]),
    label=st.sampled_from([3, ["a"]]),
)


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), which=st.sampled_from(sorted(SOLVE_ARGUMENTS)), data=st.data())
def test_solve_names_a_bad_argument_for_every_method(method, which, data):
    trained = METHODS[method]().trained
    if not trained and which in ("steps", "batch_size", "record"):
        return  # the baselines take no steps
    value = data.draw(SOLVE_ARGUMENTS[which])
    optimizer = iw.optim.sgd(0.1) if trained else None  # every trained method takes sgd
    arguments = {"steps": 2, "key": 0, "progress": False, which: value}
    _raises_naming(which, lambda: iw.solve(PROBLEM, ARCH, METHODS[method](), optimizer, **arguments))


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)),
       bad=st.sampled_from(["problem", "arch", "method", "optimizer", "unknown"]))
def test_solve_names_a_wrong_object_or_unknown_option(method, bad):
    trained = METHODS[method]().trained
    arguments = dict(problem=PROBLEM, arch=ARCH, method=METHODS[method](),
                     optimizer=iw.optim.adam(0.01) if trained else None)
    options = dict(steps=2, progress=False)
    if bad == "unknown":
        options["samples"] = 8  # an option of a method, not of solve
        _raises_naming("samples", lambda: iw.solve(*arguments.values(), **options))
        return
    if bad == "optimizer" and not trained:
        arguments[bad] = iw.optim.adam(0.01)  # a baseline has no optimizer
    else:
        arguments[bad] = {"problem": (X, Y), "arch": "mlp", "method": "finite", "optimizer": "adam"}[bad]
    _raises_naming(bad, lambda: iw.solve(*arguments.values(), **options))


# ------------------------------------------------------------------------------------------------- files

def _idx(kind, shape, payload):
    return struct.pack(">BBBB", 0, 0, kind, len(shape)) + b"".join(struct.pack(">I", s) for s in shape) + payload


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory):
    """A small valid MNIST folder (20 train, 10 test images) to corrupt."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "mnist"
    folder.mkdir()
    labels = lambda n: _idx(0x08, (n,), bytes(i % 10 for i in range(n)))  # noqa: E731
    images = lambda n: _idx(0x08, (n, 28, 28), bytes(RNG.integers(0, 256, n * 784, dtype=np.uint8)))  # noqa: E731
    for name, content in (("train-images-idx3-ubyte", images(20)), ("train-labels-idx1-ubyte", labels(20)),
                          ("t10k-images-idx3-ubyte", images(10)), ("t10k-labels-idx1-ubyte", labels(10))):
        with gzip.open(folder / f"{name}.gz", "wb") as handle:
            handle.write(content)
    assert datasets.load("mnist", root).x_train.shape == (20, 784)
    return root


@FUZZ
@given(file=st.sampled_from(["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
       damage=st.sampled_from(["truncate", "flip", "garbage", "empty", "plain", "missing"]),
       position=st.floats(0.0, 0.99))
def test_dataset_load_names_a_damaged_file(mnist_copy, tmp_path_factory, file, damage, position):
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(mnist_copy / "mnist", root / "mnist")
    path = root / "mnist" / file
    raw = gzip.decompress(path.read_bytes())
    cut = int(position * len(raw))
    if damage == "missing":
        path.unlink()
    else:
        content = {"truncate": lambda: gzip.compress(raw[:cut]),
                   "flip": lambda: gzip.compress(raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1:]),
                   "garbage": lambda: bytes(RNG.integers(0, 256, 64, dtype=np.uint8)),
                   "empty": lambda: b"",
                   "plain": lambda: raw[:cut]}[damage]()  # not gzip at all
        path.write_bytes(content)
    try:
        data = datasets.load("mnist", root)
    except (DatasetFileError, FileNotFoundError) as error:
        assert file.split(".")[0] in str(error), error
        return
    # A flipped pixel byte or label (still in 0..9) is valid data: it must load as such.
    assert damage == "flip" and cut >= 8 and np.isfinite(data.x_train).all()


@FUZZ
@given(which=st.sampled_from(["name", "n_train", "n_test", "classes", "standardize", "seed"]), data=st.data())
def test_dataset_load_names_a_bad_argument(mnist_copy, which, data):
    value = data.draw({"name": st.sampled_from(["mnistt", "", None, 3]),
                       "n_train": st.sampled_from([-10, 0, 15, 1.5, "10", 10**6]),
                       "n_test": st.sampled_from([-10, 7, "10", 10**6]),
                       "classes": st.sampled_from([(0, 0), (11,), "01", (0.5,), ()]),
                       "standardize": BAD_OPTIONS.filter(lambda v: v is not None),
                       "seed": st.sampled_from(["x", 1.5, None])}[which])
    arguments = {"name": "mnist", which: value}
    name = arguments.pop("name")
    _raises_naming(which if which != "name" else "dataset", lambda: datasets.load(name, mnist_copy, **arguments))


@pytest.fixture(scope="module")
def saved_trajectory(tmp_path_factory):
    trajectory = iw.solve(PROBLEM, ARCH, iw.Posterior(), progress=False)
    path = tmp_path_factory.mktemp("trajectory") / "posterior.npz"
    trajectory.save(path)
    return trajectory, path.read_bytes()


@FUZZ
@given(damage=st.sampled_from(["truncate", "flip", "garbage", "empty", "json"]), position=st.floats(0.0, 0.99))
def test_trajectory_load_names_the_damaged_file(saved_trajectory, tmp_path_factory, damage, position):
    trajectory, raw = saved_trajectory
    path = tmp_path_factory.mktemp("damaged") / "run.npz"
    cut = int(position * len(raw))
    if damage == "json":  # a valid zip whose metadata is not JSON
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.npy", b"{not json")
    else:
        path.write_bytes({"truncate": raw[:cut], "flip": raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1:],
                          "garbage": bytes(RNG.integers(0, 256, 200, dtype=np.uint8)), "empty": b""}[damage])
    try:
        loaded = iw.Trajectory.load(path)
    except TrajectoryFileError as error:
        assert str(error).startswith(str(path)), error
        return
    assert damage == "flip" and loaded == trajectory  # a flip in zip padding or an unused header field


# -------------------------------------------------------------------------- sizes that must be planned (issue 24)

TRAINED = ("Finite", "KernelDynamics", "AdamLimit")


@FUZZ
@given(method=st.sampled_from(TRAINED), steps=st.integers(2**28 + 1, 10**12),
       batch_size=st.sampled_from([None, 1, 2, N]))
def test_huge_steps_never_build_a_full_batch_order_and_a_minibatch_order_is_refused(monkeypatch, method, steps,
                                                                                  batch_size):
    """A full batch hands the method no order at all; any minibatch order this long is refused before any work."""
    received = []
    cls = type(METHODS[method]())
    monkeypatch.setattr(cls, "run", lambda self, *a, **kw: received.append(kw["batch_indices"]) or pytest.skip())
    call = lambda: iw.solve(PROBLEM, ARCH, METHODS[method](), iw.optim.sgd(0.1), steps=steps,  # noqa: E731
                            batch_size=batch_size, record=2, progress=False)
    if batch_size in (None, N):
        with pytest.raises(pytest.skip.Exception):
            call()
        assert received == [None]
    else:
        error = _raises_naming("batch_size", call, errors=(MemoryError,))
        assert f"steps={steps}" in str(error) and "at most" in str(error) and received == []


# ------------------------------------------------------------------------------- file formats (issue 24)


@FUZZ
@given(positions=st.lists(st.floats(0.0, 0.999), min_size=2, max_size=6), masks=st.lists(st.integers(1, 255),
       min_size=6, max_size=6), cut=st.one_of(st.none(), st.floats(0.3, 0.999)))
def test_trajectory_load_names_the_file_for_any_mix_of_corruptions(saved_trajectory, tmp_path_factory, positions,
                                                                   masks, cut):
    trajectory, raw = saved_trajectory
    damaged = bytearray(raw)
    for position, mask in zip(positions, masks):
        damaged[int(position * len(raw))] ^= mask
    if cut is not None:
        damaged = damaged[: int(cut * len(raw))]
    path = tmp_path_factory.mktemp("mixed") / "run.npz"
    path.write_bytes(bytes(damaged))
    try:
        loaded = iw.Trajectory.load(path)
    except TrajectoryFileError as error:
        assert str(error).startswith(str(path)), error
        return
    assert loaded == trajectory


@FUZZ
@given(member=st.sampled_from(["steps", "train_predictions", "diverged", "test_loss"]),
       shape=st.lists(st.integers(0, 10**6), min_size=0, max_size=4),
       dtype=st.sampled_from(["<i8", "<f4", "|b1", "<U5", "<c8", "<f8"]))
def test_an_npy_header_that_lies_is_a_file_error_before_any_allocation(saved_trajectory, tmp_path_factory, member,
                                                                        shape, dtype):
    import io

    _, raw = saved_trajectory
    source = tmp_path_factory.mktemp("source") / "run.npz"
    source.write_bytes(raw)
    with zipfile.ZipFile(source) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    original = np.lib.format.read_array(io.BytesIO(members[f"{member}.npy"]))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    members[f"{member}.npy"] = header.getvalue() + original.tobytes()
    path = source.parent / "lying.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    try:
        iw.Trajectory.load(path)
    except TrajectoryFileError as error:
        assert str(error).startswith(str(path)), error
        return
    # only a header that tells the truth (the same bytes, another valid reading) may load
    assert math.prod(shape) * np.dtype(dtype).itemsize == original.nbytes


@FUZZ
@given(file=st.sampled_from(["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
       count=st.integers(0, 2**32 - 1), extra=st.integers(0, 3))
def test_an_idx_header_that_claims_too_much_is_named(mnist_copy, tmp_path_factory, file, count, extra):
    root = tmp_path_factory.mktemp("claims")
    shutil.copytree(mnist_copy / "mnist", root / "mnist")
    path = root / "mnist" / file
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    header = struct.pack(">I", 0x0800 | ndim) + struct.pack(">I", count) + raw[8:4 + 4 * ndim]
    path.write_bytes(gzip.compress(header + raw[4 + 4 * ndim:] + bytes(extra)))
    try:
        datasets.load("mnist", root)
    except DatasetFileError as error:
        assert file in str(error), error
        return
    assert extra == 0 and count == struct.unpack(">I", raw[4:8])[0]  # only the true header loads


# ------------------------------------------------------------------------- comparisons across problems (issue 24)


@pytest.fixture(scope="module")
def reference_solve():
    return iw.solve(PROBLEM, ARCH, iw.KernelRidge("ntk"), progress=False)


@FUZZ
@given(split=st.sampled_from(["x_train", "x_test"]), row=st.integers(0, NT - 1), column=st.integers(0, D - 1),
       change=st.sampled_from([1e-6, -1.0, 3.0]))
def test_solves_on_different_inputs_have_no_distance_on_that_split(reference_solve, split, row, column, change):
    arrays = dict(x_train=X.copy(), x_test=XT.copy())
    arrays[split][row, column] += change
    other = iw.solve(iw.Problem(arrays["x_train"], Y, arrays["x_test"], YT), ARCH, iw.KernelRidge("ntk"),
                     progress=False)
    changed, kept = ("train", "test") if split == "x_train" else ("test", "train")
    with pytest.raises(ValueError, match=f"not comparable: different {changed} inputs"):
        iw.workflow.distance(other, reference_solve, changed)
    iw.workflow.distance(other, reference_solve, kept)  # the other split is comparable
    (row_,) = iw.compare([other], reference=reference_solve).distance_rows()
    assert row_[f"{changed}_distance"] is None and row_[f"{kept}_distance"] is not None


@FUZZ
@given(widths=st.lists(st.one_of(st.integers(-2, 300), st.floats(allow_nan=True, allow_infinity=True),
                                 st.sampled_from(["8", None, True])), min_size=1, max_size=4))
def test_width_jobs_accept_distinct_integral_widths_and_name_the_others(widths):
    def valid(w):
        return not isinstance(w, (bool, str)) and w is not None and (w == math.inf or (
            isinstance(w, (int, float)) and math.isfinite(w) and w == int(w) and w >= 1))

    normalized = [w if w == math.inf else int(w) for w in widths if valid(w)]
    if all(valid(w) for w in widths) and len(set(normalized)) == len(normalized):
        assert len(iw.workflow.width_jobs(widths)) == len(widths)
    else:
        _raises_naming("widths", lambda: iw.workflow.width_jobs(widths))
