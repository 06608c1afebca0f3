"""``import infinite_width`` is fast and never imports TensorFlow (each check in a fresh interpreter)."""

import json
import subprocess
import sys

IMPORT_TIME = """
import time
start = time.perf_counter()
import infinite_width
print(time.perf_counter() - start)
"""

NO_TENSORFLOW = """
import json, sys
import numpy as np
import infinite_width
after_import = "tensorflow" in sys.modules
from infinite_width import kernels
kernels.nngp_and_ntk(infinite_width.mlp(1, "relu"), np.ones((2, 3)))
import infinite_width.testing
from infinite_width._neural_tangents import nt
experimental = sys.modules["neural_tangents.experimental"]
print(json.dumps({
    "after_import": after_import,
    "after_kernel": "tensorflow" in sys.modules,
    "tf_like": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf2jax")),
    "experimental_doc": experimental.__doc__,
    "experimental_is_package": hasattr(experimental, "__path__"),
    "experimental_attrs": sorted(a for a in vars(experimental) if not a.startswith("__")),
}))
"""


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_import_is_fast():
    # Minimum of 3 fresh interpreters: the least disturbed by other processes.
    seconds = min(float(_run(IMPORT_TIME)) for _ in range(3))
    print(f"import infinite_width: {seconds:.3f} s (min of 3)")
    assert seconds < 2.0


def test_tensorflow_is_never_imported_and_experimental_is_a_placeholder():
    report = json.loads(_run(NO_TENSORFLOW))
    assert report["after_import"] is False
    assert report["after_kernel"] is False
    assert report["tf_like"] == []
    # Our empty stand-in, not the real subpackage (which imports TensorFlow).
    assert report["experimental_is_package"] is False
    assert report["experimental_attrs"] == []
    assert "infinite_width" in report["experimental_doc"]
