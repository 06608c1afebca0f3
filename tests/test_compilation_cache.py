"""The test session's jax compilation cache (tests/conftest.py): one new directory, shared with subprocesses."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("INFINITE_WIDTH_TEST_COMPILATION_CACHE") == "0",
                                reason="INFINITE_WIDTH_TEST_COMPILATION_CACHE=0 switched the cache off")

PROGRAM = "lambda x: jnp.tanh(x @ x.T) * 3.0 - x.sum()"
SUBPROCESS = f"""
import json, os
import jax, jax.numpy as jnp, numpy as np
x = jnp.asarray(np.arange(12.0, dtype=np.float32).reshape(3, 4) / 10)
value = jax.jit({PROGRAM})(x)
print(json.dumps({{"directory": jax.config.jax_compilation_cache_dir, "value": np.asarray(value).tolist()}}))
"""


def test_the_session_cache_is_a_new_directory_that_subprocesses_share():
    directory = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    assert jax.config.jax_compilation_cache_dir == str(directory)
    # created for this session (and removed after it), so no other checkout's or jax's entries are in it
    assert directory.parent == Path(tempfile.gettempdir()) and directory.name.startswith("infinite_width-jax-cache-")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0  # small test programs are cached too
    x = jnp.asarray(np.arange(12.0, dtype=np.float32).reshape(3, 4) / 10)
    here = np.asarray(jax.jit(eval(PROGRAM))(x))
    assert any(directory.iterdir())
    result = subprocess.run([sys.executable, "-c", SUBPROCESS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["directory"] == str(directory)
    np.testing.assert_array_equal(np.asarray(report["value"], np.float32), here)
