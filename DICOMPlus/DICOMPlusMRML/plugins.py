"""Objects DICOMPlus does not load itself (RTSTRUCT, RT Plan, SR, parametric maps...) handed to
Slicer's own DICOM plugins, so a study loads completely when SlicerRT, QuantitativeReporting or
other extensions are installed.

Slicer's plugins are classes in ``slicer.modules.dicomPlugins`` (name -> class). Each instance
offers loadables for lists of files (``examineForImport(fileLists)``: objects with ``files``,
``name``, ``confidence``, ``selected``, ``warning``) and loads one (``load(loadable)``). As
Slicer's DICOM browser does (DICOMLib.DICOMUtils.selectHighestConfidenceLoadables), for each
file list the selected loadables of highest confidence are loaded. Plugins look files up in
Slicer's own DICOM database, so the files are added to it first when it is open.

A plugin that raises is reported and skipped; the others still run. Main thread only (MRML).
"""

import logging

import slicer

logger = logging.getLogger(__name__)

#: Plugins not offered DICOMPlus's leftovers by default: the scalar volume plugin would load,
#: with Slicer's geometry, images DICOMPlus deliberately refused (its LoadError says why).
DEFAULT_EXCLUDE = ("DICOMScalarVolumePlugin",)


def _plugins(exclude):
    registry = getattr(slicer.modules, "dicomPlugins", None) or {}
    return [(name, registry[name]) for name in sorted(registry) if name not in exclude]


def _indexInSlicerDatabase(fileLists):
    """Plugins read tags through ``slicer.dicomDatabase``: make sure it knows the files."""
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not getattr(database, "isOpen", False):
        return
    for files in fileLists:
        for path in files:
            try:
                if not database.seriesForFile(path):  # not indexed there yet
                    database.insert(path, False, False)
            except Exception as error:  # an indexing problem must not stop the hand-off
                logger.warning("could not index %s in Slicer's DICOM database: %s", path, error)


def examineWithSlicerPlugins(fileLists, exclude=DEFAULT_EXCLUDE):
    """Offer ``fileLists`` (one list of paths per series) to Slicer's DICOM plugins.

    Returns ``(choices, problems)``: ``choices`` are ``(pluginName, plugin, loadable)`` to load,
    the selected loadables of highest confidence for each file list; ``problems`` are
    ``(pluginName, message)`` for plugins that failed to examine.
    """
    fileLists = [[str(p) for p in files] for files in fileLists if files]
    _indexInSlicerDatabase(fileLists)
    offers, problems = [], []
    for name, pluginClass in _plugins(exclude):
        try:
            plugin = pluginClass()
            loadables = plugin.examineForImport(fileLists) or []
        except Exception as error:
            logger.warning("DICOM plugin %s failed to examine: %s", name, error)
            problems.append((name, f"examine failed: {error}"))
            continue
        for loadable in loadables:
            if getattr(loadable, "selected", True) and getattr(loadable, "files", None):
                offers.append((name, plugin, loadable))
    choices = []
    for files in fileLists:
        mine = set(files)
        candidates = [offer for offer in offers if set(offer[2].files) & mine]
        if not candidates:
            continue
        best = max(float(offer[2].confidence) for offer in candidates)
        choices += [
            offer for offer in candidates if float(offer[2].confidence) == best and offer not in choices
        ]
    return choices, problems


def loadWithSlicerPlugins(fileLists, exclude=DEFAULT_EXCLUDE):
    """Examine, then load with the chosen plugins. Returns ``(loaded, problems)``: ``loaded`` are
    ``(pluginName, loadableName)``, ``problems`` ``(name, message)`` for what failed, found
    nothing to load, or loaded with a plugin's warning."""
    choices, problems = examineWithSlicerPlugins(fileLists, exclude)
    covered = {path for _, _, loadable in choices for path in loadable.files}
    for files in fileLists:
        if files and not covered & {str(p) for p in files}:
            problems.append(
                (
                    "",
                    f"no Slicer DICOM plugin can load {len(files)} {'file' if len(files) == 1 else 'files'} such as {files[0]}",
                )
            )
    loaded = []
    for name, plugin, loadable in choices:
        try:
            result = plugin.load(loadable)
        except Exception as error:
            logger.warning("DICOM plugin %s failed to load %s: %s", name, loadable.name, error)
            problems.append((loadable.name, f"{name} failed to load it: {error}"))
            continue
        if result is False:
            problems.append((loadable.name, f"{name} could not load it"))
            continue
        loaded.append((name, loadable.name))
        if getattr(loadable, "warning", ""):
            problems.append((loadable.name, f"{name}: {loadable.warning}"))
    return loaded, problems
