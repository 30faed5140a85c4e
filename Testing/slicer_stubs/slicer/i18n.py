"""``slicer.i18n`` for tests: translation is the identity (no translator is installed).

Same names as Slicer's module: ``tr(text)`` (usually imported as ``_``), ``translate(context,
text)`` and ``getContext(sourceFile)``. Does NOT check that translated placeholders match.
"""

import os as _os


def translate(context, text):
    """Return ``text`` unchanged (Slicer asks ``slicer.app.translate``)."""
    return text


def getContext(sourceFile):
    """The translation context of a source file: its name without ``.py`` (and the package
    folder name if the folder has an ``__init__.py``)."""
    name = _os.path.basename(sourceFile).removesuffix(".py")
    folder = _os.path.dirname(sourceFile)
    if _os.path.isfile(_os.path.join(folder, "__init__.py")):
        return _os.path.basename(folder) + "." + name
    return name


def tr(text):
    """Return ``text`` unchanged."""
    return text
