"""Which Slicer DICOMPlus runs in: one clear message on a Slicer that is too old.

DICOMPlus needs Slicer 5.12 or later: Python 3.12 with pydicom 3 (5.10 bundles pydicom 2.4.4,
whose API differs) and ``slicer.packaging`` (new in 5.12.0) to install pynetdicom and the pixel
decoders on demand. On an older Slicer the module would fail half-way, at the first import that
differs; instead it checks the version first and says so once.

This file imports nothing but the standard library (``slicer`` only inside the functions), so
the module can load it by path before it imports anything that an old Slicer would choke on.
The version comes from ``slicer.app.majorVersion``/``minorVersion``, Q_PROPERTYs of
qSlicerCoreApplication (attributes in PythonQt).
"""

MINIMUM_SLICER_VERSION = (5, 12)

_shown = set()


def _property(app, name):
    value = getattr(app, name, None)
    if callable(value):  # a PySide-style getter, as some stand-ins have
        value = value()
    return value


def _translate(text):
    try:  # slicer.i18n exists from Slicer 5.4 on; older ones get the English text
        from slicer.i18n import tr
    except ImportError:
        return text
    return tr(text)


def slicerVersion(app=None):
    """(major, minor) of the running Slicer, or None if the application does not say."""
    if app is None:
        import slicer

        app = slicer.app
    major, minor = _property(app, "majorVersion"), _property(app, "minorVersion")
    try:
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def unsupportedSlicerMessage(app=None):
    """None on Slicer 5.12 or later; else the one message to show instead of the panel."""
    version = slicerVersion(app)
    if version is not None and version >= MINIMUM_SLICER_VERSION:
        return None
    required = "{}.{}".format(*MINIMUM_SLICER_VERSION)
    running = "{}.{}".format(*version) if version is not None else "an unknown version"
    return _translate(
        "DICOMPlus needs Slicer {required} or later (this is Slicer {running}). "
        "Install a current Slicer from https://download.slicer.org and add DICOMPlus to it."
    ).format(required=required, running=running)


def checkSlicerVersion(app=None, display=None):
    """True on a supported Slicer. Else show the message once per session (``display``, default
    ``slicer.util.errorDisplay``) and return False; the caller then stops setting up."""
    message = unsupportedSlicerMessage(app)
    if message is None:
        return True
    if message not in _shown:
        _shown.add(message)
        if display is None:
            import slicer.util

            display = slicer.util.errorDisplay
        display(message)
    return False
