"""The engine's memory estimate against the real peak resident memory of a run.

Measured in a fresh subprocess, so that nothing else of the test session is
resident: the peak (``ru_maxrss``) minus the resident memory just before the
call, after a small warm-up call has loaded the runtime.
"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, resource
    import numpy as np
    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.limits import adam_limit

    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 20)).astype(np.float32)
    y = rng.normal(size=(1080, 10)).astype(np.float32)
    arch, adam = iw.mlp(2, "relu", 1.4, 0.1, 10), optim.adam(0.01, 0.9, 0.99)
    adam_limit.simulate(arch, x[:40], y[:40], x[40:50], adam, 2, key=0, samples=64, replicas=2, batch_size=8)
    before = resident()
    result = adam_limit.simulate(arch, x[:1080], y, x[1080:], adam, 3, key=1, samples=16384, replicas=4, rank=32,
                              features=32, batch_size=64, record=[3])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("MEMORY", result.memory.peak_bytes, peak - before, result.memory.parts["storage"])
    """
)


@pytest.mark.slow
def test_peak_resident_memory_is_within_a_quarter_of_the_estimate():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    estimate, measured, storage = map(int, out.stdout.split("MEMORY")[1].split())
    print(f"estimate {estimate / 2**30:.3f} GiB, measured peak {measured / 2**30:.3f} GiB, "
          f"stored fields {storage / 2**30:.3f} GiB")
    assert storage > 0.8 * 2**30  # the fields dominate: a measurement, not runtime noise
    assert abs(measured - estimate) <= 0.25 * estimate
