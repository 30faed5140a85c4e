"""Synthetic rows for the search benchmark: built by
:func:`DICOMPlusLib.database.synthetic.build_rows` (SQL stays inside ``database/``)."""

from __future__ import annotations

from DICOMPlusLib.database.synthetic import FAMILY, GIVEN, MODALITIES
from DICOMPlusLib.database.synthetic import build_rows as build

__all__ = ["FAMILY", "GIVEN", "MODALITIES", "build"]
