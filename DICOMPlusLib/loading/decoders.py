"""Which Python packages a series needs to be decoded, for hosts that install on demand.

Stock Slicer bundles pydicom, Pillow and pyjpegls but not GDCM or pylibjpeg (see
docs/architecture.md). Uncompressed, deflated and RLE data need nothing more; JPEG lossless needs
GDCM, JPEG 2000 and HTJ2K need pylibjpeg with its OpenJPEG plugin. :func:`missing_decoders` says
which distributions to install before decoding, from the transfer syntaxes alone (no file read),
checking the decoders pydicom can use in this environment.
"""

from __future__ import annotations

from collections.abc import Iterable

from DICOMPlusLib import uids
from DICOMPlusLib.loading.pixels import NATIVE, PLUGINS

#: The distributions that provide each pydicom decoding plugin (pydicom's own and Pillow's need
#: nothing: pydicom always has its RLE decoder, Slicer always has Pillow).
PLUGIN_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "gdcm": ("python-gdcm",),
    "pylibjpeg": ("pylibjpeg", "pylibjpeg-openjpeg"),
    "pyjpegls": ("pyjpegls",),
    "pillow": (),
    "pydicom": (),
}

DEFLATED = uids.DeflatedExplicitVRLittleEndian


def available_plugins(transfer_syntax: str) -> tuple[str, ...]:
    """The pydicom decoding plugins usable here for ``transfer_syntax`` (() if none or unknown)."""
    try:
        from pydicom.pixels import get_decoder

        return tuple(get_decoder(transfer_syntax).available_plugins)
    except (NotImplementedError, ValueError, AttributeError, ImportError):
        return ()


def missing_decoders(transfer_syntaxes: Iterable[str]) -> list[str]:
    """Distribution names to install so that every transfer syntax in ``transfer_syntaxes`` can
    be decoded ([] when all can). For each syntax with no usable plugin, the packages of the
    first plugin DICOMPlus prefers for it (pixels.PLUGINS)."""
    refresh_plugins()  # what was installed since pydicom was imported counts
    out: dict[str, None] = {}
    for ts in dict.fromkeys(str(t) for t in transfer_syntaxes if t):
        if ts in NATIVE or ts == DEFLATED or ts not in PLUGINS:
            continue
        preferred = PLUGINS[ts]
        usable = set(available_plugins(ts))
        if usable & set(preferred):
            continue
        for plugin in preferred:
            if PLUGIN_DISTRIBUTIONS.get(plugin) is not None:
                for name in PLUGIN_DISTRIBUTIONS[plugin]:
                    out[name] = None
                break
    return list(out)


#: The Python package each optional pydicom plugin imports.
_PLUGIN_PACKAGES = {"gdcm": "gdcm", "pylibjpeg": "pylibjpeg"}
_seen_packages: frozenset[str] = frozenset()


def _findable(package: str) -> bool:
    """True if ``package`` can be imported now; site folders are read again first when it is
    not (a .pth file written by an install since this interpreter started)."""
    import importlib.util
    import site

    importlib.invalidate_caches()
    if importlib.util.find_spec(package) is not None:
        return True
    for folder in site.getsitepackages():
        site.addsitedir(folder)
    return importlib.util.find_spec(package) is not None


def refresh_plugins() -> bool:
    """Let pydicom use decoders installed since it was imported (returns True if it looked).

    pydicom decides at import which plugins it has: python-gdcm or pylibjpeg installed later in
    the same process (a long-running engine, after the host's ``pip_ensure``) would be ignored.
    When a plugin's package has appeared since the last call, its pydicom module is reloaded and
    the plugin registered again for every transfer syntax DICOMPlus decodes with it. Cheap when
    nothing changed (one ``find_spec`` per package).
    """
    global _seen_packages
    import importlib

    present = frozenset(label for label, package in _PLUGIN_PACKAGES.items() if _findable(package))
    if present == _seen_packages:
        return False
    _seen_packages = present
    try:
        from pydicom.pixels import get_decoder
    except ImportError:
        return True
    importlib.invalidate_caches()
    for label in present:
        module_name = f"pydicom.pixels.decoders.{label}"
        try:
            importlib.reload(importlib.import_module(module_name))
        except Exception:  # a broken install: pydicom keeps what it had
            continue
        for ts, preferred in PLUGINS.items():
            if label not in preferred:
                continue
            try:
                decoder = get_decoder(ts)
            except (NotImplementedError, ValueError):
                continue
            if label in decoder.available_plugins:
                continue
            try:
                decoder.remove_plugin(label)
            except (KeyError, ValueError):
                pass
            try:
                decoder.add_plugin(label, (module_name, "_decode_frame"))
            except Exception:  # not usable for this syntax (e.g. a missing sub-plugin)
                continue
    return True
