"""The DICOMPlus engine: a child process that does the long work for a host that must not.

Inside Slicer, Python threads barely run (PythonQt keeps the GIL while the GUI idles), so the
module starts ``PythonSlicer -m DICOMPlusLib.engine`` with ``qt.QProcess`` and hands it import,
retrieve, send, the listener and pixel decoding. The engine is plain Python with no Qt: the same
process runs under any Python (``python -m DICOMPlusLib.engine``), which is how it is tested.

* :mod:`~DICOMPlusLib.engine.protocol`: JSON lines, rich values, host-side job bookkeeping.
* :mod:`~DICOMPlusLib.engine.server`: the engine's loop (stdin requests, stdout events).
* :mod:`~DICOMPlusLib.engine.operations`: one function per operation.
* :mod:`~DICOMPlusLib.engine.client`: a host for plain Python (a subprocess and a reader thread).
"""
