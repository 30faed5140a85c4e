"""Which Python packages a series needs to be decoded, for hosts that install on demand.

Stock Slicer bundles pydicom, Pillow and pyjpegls but not GDCM or pylibjpeg (see
docs/architecture.md). Uncompressed, deflated and RLE data need nothing more; JPEG lossless needs
GDCM, JPEG 2000 and HTJ2K need pylibjpeg with its OpenJPEG plugin. :func:`missing_decoders` says
which distributions to install before decoding, from the transfer syntaxes alone (no file read),
checking the decoders pydicom can use in this environment.
"""

from __future__ import annotations

from collections.abc import Iterable

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

DEFLATED = "1.2.840.10008.1.2.1.99"


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
