"""The suite's jax compilation cache (tests/conftest.py): one directory per machine and jax in the checkout,
shared with subprocesses and kept between runs."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CACHE_ROOT, cache_directory, prune

pytestmark = pytest.mark.skipif(os.environ.get("INFINITE_WIDTH_TEST_COMPILATION_CACHE") is not None,
                                reason="INFINITE_WIDTH_TEST_COMPILATION_CACHE chose another directory or none")

# A function of its own name (the cache file is named after it) and constant, so that no other run or
# xdist worker compiles it.
PROGRAM = "def {name}(x):\n    return jnp.tanh(x @ x.T) * 3.0 - x.sum() + {offset}\n"
SUBPROCESS = """
import json, os
import jax, jax.numpy as jnp, numpy as np
x = jnp.asarray(np.arange(12.0, dtype=np.float32).reshape(3, 4) / 10)
{program}
value = jax.jit({name})(x)
print(json.dumps({{"directory": jax.config.jax_compilation_cache_dir, "value": np.asarray(value).tolist()}}))
"""


def test_the_cache_is_one_directory_of_the_checkout_per_machine_that_subprocesses_share():
    directory = cache_directory()
    assert jax.config.jax_compilation_cache_dir == str(directory) == os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert directory.parent == CACHE_ROOT and len(directory.name) == 16
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0  # small test programs are cached too
    assert jax.config.jax_compilation_cache_max_size == -1  # jax's cap re-reads every entry on every write
    # A program no other run compiled (a new constant): this process writes it, a fresh interpreter reads it.
    token = os.urandom(6).hex()
    name = f"probe_{token}"
    program = PROGRAM.format(name=name, offset=int(token[:4], 16) / 8.0)
    namespace = {"jnp": jnp}
    exec(program, namespace)
    x = jnp.asarray(np.arange(12.0, dtype=np.float32).reshape(3, 4) / 10)
    here = np.asarray(jax.jit(namespace[name])(x))
    written = set(directory.glob(f"jit_{name}-*-cache"))
    assert len(written) == 1
    result = subprocess.run([sys.executable, "-c", SUBPROCESS.format(program=program, name=name)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["directory"] == str(directory)
    np.testing.assert_array_equal(np.asarray(report["value"], np.float32), here)
    assert set(directory.glob(f"jit_{name}-*-cache")) == written  # the subprocess hit the entry, wrote none


def test_prune_deletes_the_oldest_entries_down_to_half_only_when_over_the_bound(tmp_path):
    for age in range(10):  # entry 0 is the oldest
        path = tmp_path / f"entry{age}-cache"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(10**18 + age * 10**9, 10**18 + age * 10**9))
    assert prune(tmp_path, max_bytes=1000) == []  # 1,000 bytes: not over the bound
    deleted = prune(tmp_path, max_bytes=900)
    assert [path.name for path in deleted] == [f"entry{age}-cache" for age in range(6)]  # down to 400 <= 450
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"entry{age}-cache" for age in range(6, 10)]
