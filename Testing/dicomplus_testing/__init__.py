"""Test fixtures and helpers for DICOMPlus (not installed; used by Testing/)."""
