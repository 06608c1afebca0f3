"""One spelling per shared option: no public function spells an option otherwise, and the functions that take
one answer its other spellings with an error naming the package's word (issue 21, "defaults mean one thing")."""

import importlib
import inspect
import pkgutil

import numpy as np
import optax
import pytest

import infinite_width as iw
from infinite_width import finite, kernels, optim
from infinite_width._src.vocabulary import NON_CANONICAL

# Spellings of shared options the package must not use, and its word for each: the table the package answers
# other spellings from. ``seed`` is in it for the functions that take a jax ``key``; functions whose parameter is
# ``seed`` (numpy randomness: data subsets, bootstraps) keep it, so the scan below leaves it out.
OTHER_SPELLINGS = {spelling: word for spelling, word in NON_CANONICAL.items()
                   if spelling not in ("seed", "learning_rate")}
# A learning rate is ``lr``, except in the optimizer constructors, which mirror optax's signatures.
OPTAX_MIRRORS = {f"infinite_width.optim.{name}" for name in ("sgd", "momentum", "adam", "sign")}


def _public_callables():
    """``(qualified name, callable)`` of every public function, class and public method of the package."""
    modules = [iw] + [
        importlib.import_module(info.name) for info in pkgutil.walk_packages(iw.__path__, "infinite_width.")
        if "._src" not in info.name and not info.name.endswith("__main__")
    ]
    for module in modules:
        if module.__name__ == "infinite_width.nt":  # neural-tangents itself, re-exported
            continue
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if inspect.isfunction(value):
                yield f"{module.__name__}.{name}", value
            elif inspect.isclass(value):
                yield f"{module.__name__}.{name}", value
                for attribute, member in vars(value).items():
                    if not attribute.startswith("_") and inspect.isfunction(member):
                        yield f"{module.__name__}.{name}.{attribute}", member


def test_no_public_function_spells_a_shared_option_otherwise():
    found = []
    for qualname, function in _public_callables():
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue
        for parameter in parameters:
            if parameter in OTHER_SPELLINGS:
                found.append(f"{qualname}({parameter}=): the package says {OTHER_SPELLINGS[parameter]}")
            if parameter == "learning_rate" and qualname not in OPTAX_MIRRORS:
                found.append(f"{qualname}(learning_rate=): the package says lr")
            if parameter == "lr" and qualname in OPTAX_MIRRORS:
                found.append(f"{qualname}(lr=): an optax mirror says learning_rate")
    assert found == []


def test_the_scan_finds_what_it_is_for():
    """The check above is not vacuous: it knows the spellings the issue names, and it sees the optimizer
    constructors and the parametrization options."""
    assert OTHER_SPELLINGS["parameterization"] == "parametrization"
    assert OTHER_SPELLINGS["n_samples"] == OTHER_SPELLINGS["num_samples"] == "samples"
    assert OTHER_SPELLINGS["rng"] == NON_CANONICAL["seed"] == "key"
    seen = dict(_public_callables())
    assert OPTAX_MIRRORS <= set(seen)
    assert "parametrization" in inspect.signature(seen["infinite_width.finite.networks.network"]).parameters
    assert "parametrization" in inspect.signature(seen["infinite_width.kernels.analytic.stax"]).parameters


X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
ARCH = iw.mlp(1, "relu", out_dim=2)


@pytest.mark.parametrize(
    "call, wrong, right",
    [
        (lambda: kernels.stax(ARCH, 4, parameterization="ntk"), "parameterization", "parametrization"),
        (lambda: finite.network(ARCH, 4, parameterization="ntk"), "parameterization", "parametrization"),
        (lambda: iw.Finite(4, parameterization="ntk"), "parameterization", "parametrization"),
        (lambda: finite.Finite(4, centred=False), "centred", "centered"),
        (lambda: kernels.NNPKOptions(4, 8, parameterization="ntk"), "parameterization", "parametrization"),
        (lambda: kernels.nnpk(ARCH, X, width=4, networks=8, seed=0), "seed", "key"),
        (lambda: kernels.nnpk(ARCH, X, width=4, n_networks=8, key=0), "n_networks", "networks"),
        (lambda: kernels.plan_memory(ARCH, (4, 3), width=4, networks=8, parameterization="mup"),
         "parameterization", "parametrization"),
        (lambda: finite.train(finite.network(ARCH, 4), X, X[:, :2], optim.sgd(0.1), 1, record=[1], rng=0),
         "rng", "key"),
        (lambda: kernels.fit_hyperparameters(ARCH, X, X[:, :2], learning_rate=0.1), "learning_rate", "lr"),
        (lambda: optim.adam(lr=1e-3), "lr", "learning_rate"),
        (lambda: optim.sgd(lr=0.1), "lr", "learning_rate"),
    ],
)
def test_another_spelling_is_refused_naming_the_right_one(call, wrong, right):
    with pytest.raises(TypeError, match=rf"takes {right}=, not {wrong}="):
        call()


def test_the_right_spellings_work():
    assert len(kernels.stax(ARCH, 4, parametrization="standard")) == 3
    assert optim.adam(learning_rate=1e-3) == optim.adam(1e-3)
    assert optim.sgd(learning_rate=0.1, momentum=0.9) == optim.momentum(0.1, beta=0.9)
    assert finite.Finite(4, centered=False).centered is False


def test_one_default_for_centered_and_one_type_for_kernel_results():
    """``centered`` is True for the method, the record and finite.train alike; every kernel function returns
    jax arrays (float32 here), closed form or Monte Carlo, analytic or empirical."""
    import jax

    assert iw.Finite(8).centered and finite.Finite(8).centered
    assert inspect.signature(finite.Finite).parameters["centered"].default is True
    net = finite.network(ARCH, 8)
    trained = finite.train(net, X, X[:, :2], optim.sgd(0.1), 1, record=[0])
    assert np.all(trained.train[:, 0] == 0)  # centered: f - f0 starts at 0
    params = net.init(0, 3)
    results = [kernels.nngp(ARCH, X), kernels.ntk(ARCH, X), *kernels.nngp_and_ntk(ARCH, X),
               kernels.layerwise(ARCH, X).nngp, kernels.nnpk(ARCH, X, width=4, networks=4, key=0),
               kernels.nnpk_features(ARCH, X, width=4, networks=4, key=0),
               kernels.empirical_ntk(net, params, X), kernels.empirical_nngp(net, params, X)]
    assert all(isinstance(result, jax.Array) and result.dtype == np.float32 for result in results)


def test_optax_conventions():
    """optax's keyword names, schedules and transformations are accepted where they mean something."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10)
    spec = optim.sgd(learning_rate=schedule)
    assert spec.lr == 1.0 and float(spec.rate(2)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd(0.1, momentum=0.9, nesterov=True)
    pair = kernels.nngp_and_ntk(ARCH, X)
    nngp, ntk = pair  # still a tuple
    assert pair.nngp is nngp and pair.ntk is ntk
