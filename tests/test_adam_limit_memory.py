"""The engine's memory estimate against the real peak resident memory of a run.

Measured in a fresh subprocess, so that nothing else of the test session is
resident: the peak anonymous resident memory (``RssAnon``, sampled every 2 ms
during the call) minus its value just before the call, after a small warm-up
call has loaded the runtime.
"""

import subprocess
import sys
import textwrap

import pytest

MEASURE = textwrap.dedent(
    """
    import threading

    def anonymous():
        # Anonymous resident memory only (what the estimate models): file-backed pages, such as the
        # mapped jaxlib library, leave and re-enter the resident set when other processes need memory.
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))

    def measured(call):
        \"\"\"call() and the peak anonymous memory above its start, sampled every 2 ms.\"\"\"
        peak = [0]

        def watch(stop):
            while not stop.is_set():
                peak[0] = max(peak[0], anonymous())
                stop.wait(0.002)

        before = anonymous()
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(stop,))
        watcher.start()
        result = call()
        stop.set()
        watcher.join()
        return result, max(peak[0], anonymous()) - before
    """
)

SCRIPT = MEASURE + textwrap.dedent(
    """
    import numpy as np
    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.limits import adam_limit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 20)).astype(np.float32)
    y = rng.normal(size=(1080, 10)).astype(np.float32)
    arch, adam = iw.mlp(2, "relu", 1.4, 0.1, 10), optim.adam(0.01, 0.9, 0.99)
    adam_limit.simulate(arch, x[:40], y[:40], x[40:50], adam, 2, key=0, samples=64, replicas=2, batch_size=8)
    result, used = measured(lambda: adam_limit.simulate(arch, x[:1080], y, x[1080:], adam, 3, key=1, samples=16384,
                                                        replicas=4, rank=32, features=32, batch_size=64, record=[3]))
    print("MEMORY", result.memory.peak_bytes, used, result.memory.parts["storage"])
    """
)


def memory_report(script: str, stored: str):
    """Run ``script`` in a fresh interpreter; its printed (estimate, measured peak, stored) bytes, as ints."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    estimate, measured, storage = map(int, out.stdout.split("MEMORY")[1].split())
    print(f"estimate {estimate / 2**30:.3f} GiB, measured peak {measured / 2**30:.3f} GiB, "
          f"{stored} {storage / 2**30:.3f} GiB")
    return estimate, measured, storage


@pytest.mark.slow
def test_peak_resident_memory_is_within_a_quarter_of_the_estimate():
    estimate, measured, storage = memory_report(SCRIPT, "stored fields")
    assert storage > 0.8 * 2**30  # the fields dominate: a measurement, not runtime noise
    assert abs(measured - estimate) <= 0.25 * estimate
