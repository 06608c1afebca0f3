"""``import infinite_width`` loads no heavy optional module, reaches every subpackage and never imports TensorFlow.

Each check runs in a fresh interpreter. What keeps the import fast is
checked here as a fact (which modules it loads); its duration is measured in
``benchmarks/bench_import.py``, not asserted (a timed unit test fails under load).
"""

import json
import subprocess
import sys

#: Modules that ``import infinite_width`` must not load: they are needed only by kernels (neural-tangents),
#: plots (matplotlib and its PIL) or never (TensorFlow, which neural-tangents can pull in, and the rest).
HEAVY = ("neural_tangents", "tensorflow", "tf2jax", "matplotlib", "PIL", "sklearn", "pandas", "torch")

LOADED_BY_IMPORT = """
import json, sys
import infinite_width
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""

NO_TENSORFLOW = """
import json, sys
import numpy as np
import infinite_width
after_import = "tensorflow" in sys.modules
# Every subpackage is an attribute right after the import, without loading neural-tangents.
reached = [
    infinite_width.limits.adam_limit.simulate, infinite_width.limits.kernel_dynamics.kernel_descent,
    infinite_width.limits.baselines.kernel_ridge, infinite_width.kernels.layerwise, infinite_width.finite.train,
    infinite_width.workflow.plotting.learning_curves, infinite_width.experiments.demo.run,
    infinite_width.experiments.nnpk_ablation.run, infinite_width.datasets.load, infinite_width.optim.adam,
    infinite_width.losses.mse,
]
exported = sorted(name for name in infinite_width.__all__ if not hasattr(infinite_width, name))
nt_after_attributes = "neural_tangents" in sys.modules
from infinite_width import kernels
kernels.nngp_and_ntk(infinite_width.mlp(1, "relu"), np.ones((2, 3)))
import infinite_width.testing
from infinite_width._src.nt import nt
from infinite_width import nt as public_nt
experimental = sys.modules["neural_tangents.experimental"]
print(json.dumps({
    "after_import": after_import,
    "reached": len(reached),
    "exported_but_missing": exported,
    "nt_after_attributes": nt_after_attributes,
    "after_kernel": "tensorflow" in sys.modules,
    "tf_like": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf2jax")),
    "experimental_doc": experimental.__doc__,
    "experimental_is_package": hasattr(experimental, "__path__"),
    "experimental_attrs": sorted(a for a in vars(experimental) if not a.startswith("__")),
    "public_nt_is_neural_tangents": public_nt.stax is nt.stax and infinite_width.nt.predict is nt.predict,
    "nt_in_all": "nt" in infinite_width.__all__,
}))
"""


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_import_loads_no_heavy_module():
    loaded = set(json.loads(_run(LOADED_BY_IMPORT)))
    assert "infinite_width" in loaded
    assert sorted(loaded & set(HEAVY)) == []
    assert "jax" not in loaded  # every name is imported on first use (tests/test_startup.py)


def test_tensorflow_is_never_imported_and_experimental_is_a_placeholder():
    report = json.loads(_run(NO_TENSORFLOW))
    assert report["after_import"] is False
    assert report["reached"] == 11 and report["exported_but_missing"] == []
    assert report["nt_after_attributes"] is False
    assert report["after_kernel"] is False
    assert report["tf_like"] == []
    # Our empty stand-in, not the real subpackage (which imports TensorFlow).
    assert report["experimental_is_package"] is False
    assert report["experimental_attrs"] == []
    assert "infinite_width" in report["experimental_doc"]
    # infinite_width.nt is neural-tangents itself, reached lazily and kept out of `import *`.
    assert report["public_nt_is_neural_tangents"] is True
    assert report["nt_in_all"] is False
