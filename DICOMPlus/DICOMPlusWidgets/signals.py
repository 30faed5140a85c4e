"""Signals of the DICOMPlus widgets, in plain Python.

PythonQt (Slicer's Qt binding) cannot declare new Qt signals on a Python subclass of a Qt class
(see MeVisLab/pythonqt issue 44; SlicerHeart uses the same workaround), so the widgets' own
signals are instances of :class:`Signal`. They read like Qt's new-style signals::

    browser.seriesSelected.connect(preview.setSeries)
    browser.seriesSelected.disconnect(preview.setSeries)

What differs from a Qt signal: there is no string form (``obj.connect("seriesSelected(QString)",
slot)`` does not exist for them); ``emit`` calls the slots at once, in connection order, on the
emitting thread (always the main thread: the widgets emit only from Qt event handlers and timers),
like a direct connection. A slot that raises goes to ``sys.excepthook`` (as an exception in a Qt
slot does: Slicer prints it in the Python console, pytest-qt fails the test) and the other slots
still run.

As in Qt, a connection does not keep the receiver alive: a bound method is held through a weak
reference and dropped when its object goes away (plain functions, lambdas and methods of objects
without weak references are held strongly). This matters beyond tidiness: a widget whose signal
held its host's method strongly would form a reference cycle with the host, and Python's cycle
collector may run in any thread, so a parentless Qt widget in such a cycle could be destroyed in
a worker thread.
"""

from __future__ import annotations

import sys
import types
import weakref


def _reference(slot):
    """A callable returning ``slot`` (or None once its object is gone)."""
    if isinstance(slot, types.MethodType):
        try:
            return weakref.WeakMethod(slot)
        except TypeError:  # the object has no weak references
            pass
    return lambda: slot


class Signal:
    """Callables called with the emitted arguments (see module docstring)."""

    def __init__(self, *types, name=""):
        self.types = types  # documentation only: the argument types, as in Qt
        self.name = name
        self._slots = []  # [(slot for comparison, or None when weak; reference)]
        self.blocked = False

    def connect(self, slot):
        """Call ``slot(*args)`` on every emit. Connecting the same callable twice calls it twice,
        as in Qt; returns True."""
        if not callable(slot):
            raise TypeError(f"slot must be callable, got {slot!r}")
        self._slots.append(_reference(slot))
        return True

    def disconnect(self, slot=None):
        """Forget ``slot`` (its first connection), or every slot; False if it was not connected."""
        if slot is None:
            had = bool(self._slots)
            self._slots.clear()
            return had
        for index, reference in enumerate(self._slots):
            if reference() == slot:
                del self._slots[index]
                return True
        return False

    def emit(self, *args):
        if self.blocked:
            return
        for reference in list(self._slots):
            slot = reference()
            if slot is None:
                self._slots.remove(reference)
                continue
            try:
                slot(*args)
            except Exception:
                sys.excepthook(*sys.exc_info())

    def receivers(self):
        self._slots = [reference for reference in self._slots if reference() is not None]
        return len(self._slots)

    def __repr__(self):
        signature = ", ".join(getattr(t, "__name__", str(t)) for t in self.types)
        return f"<Signal {self.name}({signature}), {self.receivers()} slot(s)>"
