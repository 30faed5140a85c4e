"""A command line whose pydicom import is slow, as on a loaded machine.

pydicom's modules import each other; two threads importing it at once can see a partially
initialised module. The tests that check that DICOMPlus imports it once, on one thread, before
its worker threads need it, run ``python -c SLOW_PYDICOM <dicomplus arguments>``: each import
of pydicom.dataset is announced on stderr ("importing pydicom.dataset on <thread>") and takes a
second longer.
"""

from __future__ import annotations

import textwrap

# Runs the command line with pydicom.dataset's import a second longer (while it holds the import
# locks of pydicom and pydicom.dataset), and says when that import ran.
SLOW_PYDICOM = textwrap.dedent(
    """
    import importlib.abc, sys, threading, time

    class Slow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "pydicom.dataset":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                print("importing pydicom.dataset on", threading.current_thread().name, file=sys.stderr, flush=True)
                time.sleep(1.0)
                run(module)

            spec.loader.exec_module = exec_module
            return spec

    import importlib.util
    sys.meta_path.insert(0, Slow())
    from DICOMPlusLib.cli.app import main
    sys.exit(main(sys.argv[1:]))
    """
)
