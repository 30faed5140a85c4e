"""UIDs for what DICOMPlus writes: an organisation root, a generator, validation.

PS3.5 9.1: a UID is at most 64 characters of digits and dots; each component is a number without
leading zeros ("0" itself is allowed); no empty component. By default DICOMPlus writes UUID-derived
UIDs under the root ``2.25`` (PS3.5 B.2, ISO/IEC 9834-8), which need no registration. An
organisation that owns a root can set it (``UIDGenerator(root="1.2.826.0.1.3680043.10.999")``);
the suffix is then the decimal form of a random 128-bit UUID cut to fit 64 characters, so a
root must leave room for at least :data:`MIN_SUFFIX_DIGITS` digits.

Why not pydicom's ``generate_uid``: it is fine, but it mixes pydicom's own root in by default
and its root check allows roots that leave no room for randomness.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ExportError

#: The UUID-derived root of PS3.5 B.2.
UUID_ROOT = "2.25"
MAX_UID_LENGTH = 64
#: A root must leave room for this many random digits (about 100 bits): collisions stay negligible.
MIN_SUFFIX_DIGITS = 30

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: object) -> bool:
    """True if ``value`` is a string that is a valid UID (PS3.5 9.1)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_UID_LENGTH and bool(_UID.match(value))


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`ExportError` naming ``what``.

    Rejects what a hostile or broken source may carry: padding, spaces, letters, path
    separators, empty or zero-padded components, more than 64 characters.
    """
    if not isinstance(value, str):
        raise ExportError(f"{what} must be a string of digits and dots, got {type(value).__name__}")
    if not is_valid_uid(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ExportError(
            f"{what} {shown!r} is not a valid DICOM UID (PS3.5 9.1: at most 64 characters, digits "
            "and dots, no empty or zero-padded component); leave it empty to get a new one"
        )
    return value


def validate_root(root: str) -> str:
    """Check an organisation root: a valid UID short enough to leave room for random digits."""
    validate_uid(root, "UID root")
    room = MAX_UID_LENGTH - len(root) - 1
    if room < MIN_SUFFIX_DIGITS:
        raise ExportError(
            f"UID root {root!r} is {len(root)} characters long: it leaves {max(room, 0)} digits for "
            f"the unique part, fewer than {MIN_SUFFIX_DIGITS}; use a root of at most "
            f"{MAX_UID_LENGTH - 1 - MIN_SUFFIX_DIGITS} characters"
        )
    return root


@dataclass(frozen=True)
class UIDGenerator:
    """Makes new UIDs under ``root`` (None: the UUID-derived ``2.25`` root, PS3.5 B.2).

    ``UIDGenerator()()`` returns one UID; :meth:`many` yields as many as asked.
    """

    root: str | None = None

    def __post_init__(self) -> None:
        if self.root is not None:
            validate_root(self.root)

    def __call__(self) -> str:
        value = uuid.uuid4().int
        if self.root is None:
            return f"{UUID_ROOT}.{value}"
        room = MAX_UID_LENGTH - len(self.root) - 1
        suffix = str(value)[:room].lstrip("0") or "1"
        return f"{self.root}.{suffix}"

    def many(self, count: int) -> Iterator[str]:
        """``count`` new UIDs, one at a time."""
        for _ in range(count):
            yield self()


#: The generator used when a caller gives none.
DEFAULT_GENERATOR = UIDGenerator()


def new_uid(generator: UIDGenerator | None = None) -> str:
    """One new UID from ``generator`` (default: UUID-derived)."""
    return (generator or DEFAULT_GENERATOR)()


def ensure_series_is_new(db, series_uid: str) -> None:
    """Refuse to write into a series that already exists in ``db``.

    Adding instances to someone else's series changes what that series means (its images, its
    geometry) behind the back of every system that already has it; an export always makes a new
    series. Raises :class:`ExportError`.
    """
    validate_uid(series_uid, "SeriesInstanceUID")
    if db is None:
        return
    found = db.search("series", {"SeriesInstanceUID": series_uid}, limit=1)
    if found:
        raise ExportError(
            f"series {series_uid} already exists in the database ({db.path}); an export always "
            "writes a new series: leave the SeriesInstanceUID empty to get a new one"
        )


def ensure_unique(uids: Iterable[str], what: str = "UID") -> None:
    """Raise :class:`ExportError` if a UID repeats (e.g. the same UID given for two roles)."""
    seen: set[str] = set()
    for uid in uids:
        if uid in seen:
            raise ExportError(f"{what} {uid} is used twice; each object needs its own UID")
        seen.add(uid)
