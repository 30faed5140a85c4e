"""Root of the DICOMPlus test suite.

Fixtures live in the ``dicomplus_testing`` package beside this file, one module per concern:
``data`` (shared series, synthetic series), ``peers`` (Orthanc, dcmqrscp, DCMTK tools,
dciodvfy, free ports) and ``harness`` (the slicer-testing stubs: real MRML, real Qt).
"""

pytest_plugins = [
    "dicomplus_testing.data",
    "dicomplus_testing.peers",
    "dicomplus_testing.harness",
    "dicomplus_testing.isolation",
]
