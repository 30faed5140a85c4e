"""Root of the DICOMPlus test suite.

Fixtures live in the ``dicomplus_testing`` package beside this file, one module per concern:
``data`` (shared series, synthetic series), ``peers`` (Orthanc, dcmqrscp, DCMTK tools,
dciodvfy, free ports), ``harness`` (the slicer-testing stubs: real MRML, real Qt) and ``tls`` (a
self-signed certificate).
"""

pytest_plugins = [
    "dicomplus_testing.data",
    "dicomplus_testing.peers",
    "dicomplus_testing.harness",
    "dicomplus_testing.postgres",
    "dicomplus_testing.backends",
    "dicomplus_testing.isolation",
    "dicomplus_testing.tls",
]

# Whole files of timing-sensitive tests (GUI latency under 100 ms, thread starvation ratios): they
# measure the machine, so they must not share it with other tests. ``make test`` runs
# ``-m "not timing"`` in parallel workers, then ``-m timing`` alone. Single tests elsewhere carry
# ``@pytest.mark.timing`` themselves.
TIMING_FILES = {"test_module_pythonqt_runtime.py", "test_harness_pythonqt.py"}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name in TIMING_FILES:
            item.add_marker(pytest.mark.timing)
