"""An Application Entity's title and port: the ones DICOMPlus uses unless told otherwise, and
the checks of both.

A module of its own, below :mod:`.endpoints` and :mod:`.nodes` (which re-export these names),
so that a listener, which is given its title and port but reaches no node, imports neither:
they define the node and endpoint classes, whose ``@dataclass`` methods are compiled as the
module is imported (~3 ms of ``dicomplus listen``'s start).
"""

from __future__ import annotations

from DICOMPlusLib.errors import NetworkError

#: The AE title DICOMPlus uses for itself unless told otherwise (listener and calling AE).
DEFAULT_AE_TITLE = "DICOMPLUS"
#: The registered DICOM port (PS3.8 G.1) needs root; 11112 is the customary unprivileged one.
DEFAULT_PORT = 11112


def check_ae_title(value: str, what: str = "AE title") -> str:
    """An AE title as PS3.5 6.2 allows it: 1-16 characters, no backslash or control
    characters, not only spaces. Leading and trailing spaces are not significant."""
    text = str(value).strip()
    if not text or len(text) > 16 or "\\" in text or any(ord(c) < 32 or ord(c) > 126 for c in text):
        raise NetworkError(
            f"invalid {what} {value!r}: use 1 to 16 printable ASCII characters without backslash"
        )
    return text


def check_port(value: int | str) -> int:
    """A TCP port number, 1-65535."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise NetworkError(f"invalid port {value!r}: use a number from 1 to 65535") from None
    if not 0 < port < 65536:
        raise NetworkError(f"invalid port {value!r}: use a number from 1 to 65535")
    return port
