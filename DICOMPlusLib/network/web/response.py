"""Reading DICOMweb answers without trusting them (PS3.18 8.7, F.2; RFC 2046 and RFC 2387).

A server may answer anything: malformed or endless JSON, an HTML login page with status 200,
JSON of another shape, a multipart body without its boundary, a part that is not DICOM. Each
case ends in the caller's error type (``QueryError``, ``RetrieveError``...) with a message that
names the server that answered and what was wrong, never in a traceback. Memory stays bounded:
JSON is read up to a size cap, and multipart parts are written to a temporary file in the
store as they stream in (and moved into place once complete), never held whole in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from DICOMPlusLib.errors import StreamCut

if TYPE_CHECKING:
    import requests

    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.database.ingest import Incoming

#: Largest JSON answer read (a QIDO-RS page of 200 results is well under 1 MiB).
MAX_JSON_BYTES = 32 << 20
#: Largest part header block and largest preamble before the first boundary of a multipart body.
MAX_PART_HEADERS = 64 << 10
MAX_PREAMBLE = 1 << 20
_TAG_KEY = re.compile(r"[0-9A-Fa-f]{8}")


def who(response: requests.Response, base: str) -> str:
    """The server that answered: the service root, and where a redirect ended if elsewhere."""
    final = getattr(response, "url", "") or ""
    if final and urlsplit(final).netloc != urlsplit(base).netloc:
        return f"{base} (redirected to {final})"
    return base


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def read_json(response: requests.Response, base: str, error: type[Exception], *, limit: int = MAX_JSON_BYTES):
    """The JSON value of a response read with ``stream=True`` (an empty body is ``[]``)."""
    import requests

    server = who(response, base)
    media = _media_type(response)
    if "html" in media:
        raise error(
            f"{server} answered an HTML page (HTTP {response.status_code}), not DICOM JSON: check that the URL "
            "is the DICOMweb root and that no login page stands in front of it"
        )
    body = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=1 << 16):
            body += chunk
            if len(body) > limit:
                raise error(f"{server} sent more than {limit >> 20} MiB of JSON; stopped reading")
    except requests.exceptions.RequestException as exc:
        raise error(f"the connection to {server} broke while reading its answer: {exc}") from None
    finally:
        response.close()
    if not body.strip():
        return []
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        what = f"JSON ({exc})" if isinstance(exc, ValueError) else "JSON (nested too deeply)"
        kind = f" ({media})" if media else ""
        raise error(f"{server} sent malformed {what}{kind}: not a DICOMweb answer") from None


def dicom_json_list(value, server: str, error: type[Exception]) -> list[dict]:
    """Check the shape of a QIDO-RS answer: a list of DICOM JSON objects (PS3.18 F.2), each a
    mapping of 8-hex-digit tags to attribute objects with a ``Value`` list if any."""

    def wrong(what: str) -> Exception:
        return error(f"{server} sent JSON of the wrong shape: {what} (expected a list of DICOM JSON objects)")

    if not isinstance(value, list):
        raise wrong(f"a {type(value).__name__} at the top level")
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise wrong(f"result {n + 1} is a {type(item).__name__}")
        for key, element in item.items():
            if not _TAG_KEY.fullmatch(key) or not isinstance(element, dict):
                raise wrong(f"result {n + 1} has {key!r}: {type(element).__name__}")
            values = element.get("Value")
            if values is not None and not isinstance(values, list):
                raise wrong(f"result {n + 1}, attribute {key} has a Value that is not a list")
    return value


def stow_failures(answer, server: str, error: type[Exception]) -> dict[str, str]:
    """{SOP Instance UID: reason} from a STOW-RS answer's Failed SOP Sequence (PS3.18 10.5.3);
    an empty answer (HTTP 200 with no body) means every instance was stored."""
    if answer == []:
        return {}
    wrong = error(
        f"{server} answered the STOW-RS request with JSON of the wrong shape (not a Store Instances Response)"
    )
    if not isinstance(answer, dict):
        raise wrong
    failed: dict[str, str] = {}
    try:
        for item in (answer.get("00081198") or {}).get("Value", []):
            sop = ((item.get("00081155") or {}).get("Value") or [""])[0]
            reason = ((item.get("00081197") or {}).get("Value") or [0])[0]
            failed[str(sop)] = f"failure reason 0x{int(reason):04X}" if reason else "failed"
    except (AttributeError, TypeError, ValueError, IndexError):
        raise wrong from None
    return failed


def _boundary(response: requests.Response, server: str, error: type[Exception]) -> bytes:
    content_type = response.headers.get("Content-Type", "")
    if "multipart/" in content_type.lower():
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value.strip().strip('"'):
                return value.strip().strip('"').encode("latin-1", "replace")
    what = "an HTML page" if "html" in content_type.lower() else repr(content_type or "no Content-Type")
    raise error(
        f"{server} answered {what} (HTTP {response.status_code}), not a multipart/related response with a boundary"
    )


def _check_part_headers(block: bytes, n: int, server: str, error: type[Exception]) -> None:
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            media = value.split(b";")[0].strip().lower().decode("latin-1")
            if media not in ("application/dicom", "application/octet-stream"):
                raise error(f"part {n} from {server} is {media}, not application/dicom")


def spool_multipart(
    response: requests.Response,
    db: DatabaseProtocol,
    base: str,
    error: type[Exception],
    *,
    chunk_size: int = 1 << 20,
) -> Generator[Incoming, None, None]:
    """Yield, one by one, incoming files of ``db``'s ingest each holding one complete part of a
    multipart/related response (RFC 2046 5.1.1). The caller takes ownership of each (commits or
    discards it); a file of a part cut short is removed here and :class:`StreamCut` raised."""
    server = who(response, base)
    delimiter = b"\r\n--" + _boundary(response, server, error)
    keep = len(delimiter) + 1
    buf = bytearray(b"\r\n")  # the first delimiter may open the body without a line break
    state = "preamble"
    seen = 0  # bytes dropped before the first delimiter
    parts = 0
    incoming: Incoming | None = None
    try:
        for chunk in response.iter_content(chunk_size=chunk_size):
            buf += chunk
            while True:
                if state == "preamble":
                    at = buf.find(delimiter)
                    if at < 0:
                        drop = max(0, len(buf) - keep)
                        seen += drop
                        del buf[:drop]
                        if seen > MAX_PREAMBLE:
                            raise error(
                                f"{server} sent {seen} bytes without the multipart boundary it announced"
                            )
                        break
                    del buf[: at + len(delimiter)]
                    state = "delimiter"
                elif state == "delimiter":
                    if len(buf) < 2:
                        break
                    if buf[:2] == b"--":
                        return  # the closing delimiter
                    end = buf.find(b"\r\n")
                    if end < 0:
                        if len(buf) > MAX_PART_HEADERS:
                            raise error(f"{server} sent a malformed multipart delimiter line")
                        break
                    del buf[: end + 2]
                    state = "headers"
                elif state == "headers":
                    if buf.startswith(b"\r\n"):  # a part without headers
                        block, skip = b"", 2
                    else:
                        end = buf.find(b"\r\n\r\n")
                        if end < 0:
                            if len(buf) > MAX_PART_HEADERS:
                                raise error(f"part {parts + 1} from {server} has more than 64 KiB of headers")
                            break
                        block, skip = bytes(buf[:end]), end + 4
                    parts += 1
                    _check_part_headers(block, parts, server, error)
                    del buf[:skip]
                    incoming = db.ingest.incoming()
                    state = "body"
                else:  # body
                    at = buf.find(delimiter)
                    upto = at if at >= 0 else max(0, len(buf) - keep)
                    assert incoming is not None
                    incoming.write(memoryview(buf)[:upto])
                    if at < 0:
                        del buf[:upto]
                        break
                    del buf[: at + len(delimiter)]
                    incoming.close()
                    done, incoming = incoming, None
                    state = "delimiter"
                    yield done
        if state == "body":
            raise StreamCut("the server closed the connection in the middle of an instance")
        if state == "headers" or (state == "delimiter" and buf and not buf.startswith(b"-")):
            # a part begun, or a delimiter line, cut short: the parts after it are lost, not absent
            raise StreamCut(f"the server closed the connection in the headers of part {parts + 1}")
        if state == "preamble":
            raise error(f"{server} sent no multipart part (the boundary it announced never came)")
    finally:
        if incoming is not None:
            incoming.discard()


def store_spooled(
    db: DatabaseProtocol, incoming: Incoming, n: int, server: str, error: type[Exception]
) -> str:
    """Commit a spooled part through the database's ingest (policy of WADO-RS: an instance
    already there is kept); returns its SOP Instance UID. The temporary file never outlives
    this call; a part that is not DICOM, or cannot be stored, raises ``error``."""
    from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus

    result = db.ingest.commit(incoming, POLICY[IngestSource.WADO_RS])
    if result.status is StoreStatus.UNREADABLE:
        raise error(f"part {n} from {server} is not DICOM: {result.reason}")
    if result.status is StoreStatus.FAILED:
        what = "out of disk space" if result.out_of_space else result.reason
        raise error(f"cannot store part {n} from {server}: {what}")
    return result.sop_instance_uid
