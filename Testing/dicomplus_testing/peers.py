"""Fixtures for real DICOM peers on loopback (filled in below)."""
