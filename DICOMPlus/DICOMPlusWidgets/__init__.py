"""DICOMPlus widgets that any Slicer module can create and place in its own layout.

The DICOMPlus panel is made of these; another module embeds them the same way::

    # in MyModule.py, with self.parent.dependencies = ["DICOMPlus"]
    from DICOMPlusWidgets import DICOMPlusBrowserWidget, DICOMPlusPreviewWidget

    logic = slicer.util.getModuleLogic("DICOMPlus")   # or DICOMPlus.DICOMPlusLogic(databasePath=...)
    self.browser = DICOMPlusBrowserWidget(logic)
    self.preview = DICOMPlusPreviewWidget(logic)
    self.layout.addWidget(self.browser)
    self.layout.addWidget(self.preview)
    self.browser.seriesSelected.connect(self.preview.setSeries)
    self.browser.loadRequested.connect(lambda entries: ...)    # [("series", uid), ...]
    self.browser.refresh()

* :class:`DICOMPlusBrowserWidget`: patients -> studies -> series of the local database, search,
  thumbnails: series as a thumbnail grid under each study (``grid``), or a compact tree
  (``setViewMode("tree")``). Signals selectionChanged, seriesSelected, studySelected,
  patientSelected, loadRequested, refreshed, viewModeChanged.
* :class:`DICOMPlusPreviewWidget`: a series slice by slice in the loader's geometric order,
  autoplay, window/level, pan and zoom, load warnings; never touches the scene. Signals
  seriesShown, sliceChanged, timePointChanged, windowLevelChanged, loadRequested,
  resampledLoadRequested, failed.
* :class:`DICOMPlusActivityWidget`: DICOMPlusLib jobs with progress bars and Cancel. Signals
  jobStarted, jobFinished, jobEnded.
* :class:`DICOMPlusNetworkWidget`: server nodes with echo, query form and results, Retrieve and
  Send selected, the listener. Signals nodeChanged, echoFinished, queryFinished, retrieveFinished,
  sendFinished, listenerChanged, loadRequested.
* :class:`DICOMPlusSliceView`: the preview's canvas (an image with pan, zoom and overlays).
* :mod:`text`: DICOM values for people (names without carets, titles for empty descriptions,
  plurals) and load warnings in the user's words (``warningText``, ``offersResample``).

Signals are :class:`Signal` objects (plain Python, because PythonQt cannot add Qt signals to a
Python class): ``widget.signalName.connect(slot)``. Everything is driven from the Qt main thread;
work (headers, pixels, thumbnails, import, network) runs in the DICOMPlus engine process, and the
widgets collect the results with QTimers. Call ``cleanup()`` on a widget when its host goes away
to stop its timers and workers.

This package sits in the DICOMPlus module folder, which Slicer puts on sys.path; it is a package,
not a top-level .py file, so Slicer does not take it for a module of its own.
"""

from . import compat, engine, fitting, text
from .activity import DICOMPlusActivityWidget
from .browser import DICOMPlusBrowserWidget
from .exportsection import ExportSection
from .logic import DatabaseLogic, EngineLogic
from .network import DICOMPlusNetworkWidget
from .preview import DICOMPlusPreviewWidget
from .selftest import SelfTest
from .signals import Signal
from .sliceview import DICOMPlusSliceView

__all__ = [
    "DICOMPlusActivityWidget",
    "DICOMPlusBrowserWidget",
    "DICOMPlusNetworkWidget",
    "DICOMPlusPreviewWidget",
    "DICOMPlusSliceView",
    "DatabaseLogic",
    "EngineLogic",
    "ExportSection",
    "SelfTest",
    "Signal",
    "compat",
    "engine",
    "fitting",
    "text",
]
