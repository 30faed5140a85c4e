"""QIDO-RS query parameters from DICOM matching values (PS3.18 8.3.4, PS3.4 C.2.2.2).

What a user types for local search or C-FIND (``PatientName=Doe^J*``, ``ModalitiesInStudy=CT\\MR``,
``StudyTime=-0930``) is sent in a form the common QIDO-RS servers read the same way, Orthanc
1.10's DICOMweb plugin included: lists comma-separated, no percent-escape inside matching values
(that plugin decodes none), wildcards where a character cannot be sent, a list with wildcards
split into several requests. The requests may so ask a superset; the answers are re-checked
(:mod:`DICOMPlusLib.network.answers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from DICOMPlusLib.database.matching import explicit_upper_bound

# PS3.4 C.2.2.2.4: the VRs on which wildcards are allowed
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UR"})
_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~*")


def _qido_vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return dictionary_VR(tag).split(" or ")[0] if tag is not None else ""


def _qido_text(vr: str, text: str) -> str:
    """One matching value in a form every common QIDO-RS server reads the same way.

    Orthanc 1.10's plugin does not decode percent-escapes in query values (``Doe%5EPeter``,
    ``Chest%20CT`` and any UTF-8 name match nothing) and answers 400 to raw non-ASCII bytes.
    So, on the VRs that allow wildcards (C.2.2.2.4), a character outside the RFC 3986
    unreserved set (or a run of them, non-ASCII letters included) is sent as ``*``: the request
    stays RFC 3986 valid, matches a superset on every server, and :func:`~DICOMPlusLib.network.query.query`
    re-checks each answer against the exact criteria. A person name also loses its trailing
    empty components and groups, and ends with ``*`` so that a stored ``Doe^Jane^^`` is found
    by a server that compares delimiters literally. A ``?`` is sent as ``*`` (Orthanc's ``?``
    does not match an accented letter). A time range's upper bound is written to its full
    precision. Other VRs (UIDs, dates, numbers) are sent as they are and percent-encoded by
    :func:`query_string` if needed."""
    if vr not in _WILDCARD_VRS:
        return explicit_upper_bound(vr, text)
    if vr == "PN":
        text = "=".join(g.rstrip("^ ") for g in text.split("=")).rstrip("=")
    out = []
    for ch in text:
        if ch in _LITERAL or (vr == "PN" and ch == "="):
            out.append(ch)
        else:
            out.append("*")
    if vr == "PN" and out and out[-1] != "*":
        out.append("*")
    encoded = "".join(out)
    while "**" in encoded:
        encoded = encoded.replace("**", "*")
    return encoded


def _qido_parts(vr: str, text: str) -> list[str]:
    if vr in _SINGLE_TEXT_VRS or "\\" not in text:
        return [text]
    return list(dict.fromkeys(p for p in text.split("\\") if p))


def _qido_value(key: str, value: object) -> str:
    """A matching value as sent: each value in the form of :func:`_qido_text`, a list
    comma-separated (PS3.18 8.3.4.1)."""
    vr = _qido_vr(key)
    text = "" if value is None else str(value)
    if not vr:
        return text
    return ",".join(dict.fromkeys(_qido_text(vr, p) for p in _qido_parts(vr, text)))


def qido_split(criteria: Mapping[str, object]) -> list[dict[str, object]]:
    """The criteria as the QIDO-RS requests that together ask them: one, unless a list has
    values with wildcards (or values that need them, see :func:`_qido_text`), which servers
    (Orthanc 1.10) do not apply inside a list; such a list becomes one request per value."""
    variants: list[dict[str, object]] = [{}]
    for key, value in criteria.items():
        vr = _qido_vr(str(key))
        parts = _qido_parts(vr, "" if value is None else str(value)) if vr else [value]
        encoded = [_qido_text(vr, str(p)) for p in parts] if vr else []
        if len(parts) > 1 and any("*" in e or "?" in e for e in encoded):
            variants = [{**v, key: p} for v in variants for p in parts]
        else:
            variants = [{**v, key: value} for v in variants]
    return variants


def query_string(params: dict[str, object]) -> str:
    """Encode QIDO parameters, leaving the wildcards ``*`` and ``?``, the list separator ``,``
    and the PN group separator ``=`` as they are (RFC 3986 allows them in a query; some servers,
    Orthanc 1.10 among them, decode no percent-escape at all). Matching values are first put
    in the form of :func:`_qido_value`."""
    return "&".join(
        f"{quote(str(k), safe='')}={quote(_qido_value(str(k), v), safe='*?,=')}" for k, v in params.items()
    )
