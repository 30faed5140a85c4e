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

# What ``make test-312`` (the suite again under Python 3.12, Slicer 5.12's) leaves out, marked
# ``same_on_every_python``; ``make test`` runs them. Static checks of the sources and the packaging,
# whose outcome no interpreter changes, and the PostgreSQL server's own behaviour: a full WAL disk,
# four listener processes into one index, the writers' races, and the PostgreSQL half of the
# tests parametrised over both back ends (their SQLite half runs; the PostgreSQL client code runs
# under 3.12 in the dedicated files: test_database_postgres, test_engine_postgres,
# test_cli_postgres, ...). Together ~20% of the suite's time, which keeps CI in its budget.
SAME_ON_EVERY_PYTHON_FILES = {
    "test_architecture.py", "test_bench_runner.py", "test_catalog.py", "test_docs.py",
    "test_guards.py", "test_layering_sql.py", "test_packaging.py",
    "test_disk_full_postgres.py", "test_network_listener_postgres.py",
}  # fmt: skip


def _postgresql_variant(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        isinstance(value, str) and value == "postgresql" for value in callspec.params.values()
    )


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name in TIMING_FILES:
            item.add_marker(pytest.mark.timing)
        if item.path.name in SAME_ON_EVERY_PYTHON_FILES or _postgresql_variant(item):
            item.add_marker(pytest.mark.same_on_every_python)
