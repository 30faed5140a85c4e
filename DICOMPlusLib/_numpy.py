"""numpy, imported without OpenBLAS's idle worker threads spinning (imported for that effect).

numpy's wheels carry OpenBLAS, which starts a worker thread per core when numpy is imported.
Each worker then waits for work by spinning (``sched_yield`` in a loop) for 2**28 cycles, ~0.1 s,
before it sleeps; a loader never gives it any. On a 2-core machine that spinner takes the core
that the load's own threads (the prefetch, the volume's page faults, the pixel readers) need:
a fresh ``import numpy`` costs ~125-135 ms of CPU instead of ~80 ms, the whole difference the
worker's (``perf stat``, 2026-12-04). ``OPENBLAS_THREAD_TIMEOUT=4`` (the log2 of the cycles to
spin, clamped to 4-30: OpenMathLib/OpenBLAS#5171) makes the workers sleep at once; OpenBLAS reads
it once, when numpy loads it. It is set with ``os.putenv`` around that first import and removed
after, as numpy itself sets ``OPENBLAS_MAIN_FREE`` (numpy#30637): ``os.environ`` and the
environment of child processes are left as they were.

The only lasting effect is OpenBLAS's: a multithreaded BLAS call later in the process wakes its
sleeping workers instead of finding them spinning (microseconds per call). Nothing is changed
when numpy is already imported (Slicer, a second load) or when the variable is set already.
"""

from __future__ import annotations

import os
import sys

_TIMEOUT = "OPENBLAS_THREAD_TIMEOUT"

if "numpy" not in sys.modules and _TIMEOUT not in os.environ and hasattr(os, "unsetenv"):
    os.putenv(_TIMEOUT, "4")
    try:
        import numpy  # noqa: F401
    finally:
        os.unsetenv(_TIMEOUT)
