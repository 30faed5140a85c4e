"""The base of the records in :mod:`DICOMPlusLib.models` and :mod:`DICOMPlusLib.query_records`."""

from __future__ import annotations

from DICOMPlusLib import dataclasses_lite


class DictRecord:
    """A record dataclass that turns into the JSON the CLI prints: its fields keyed by name (a
    DICOM keyword), ``None`` left out, the ``extra`` mapping's items added."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses_lite.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None:
                out[f.name] = value
        return out
