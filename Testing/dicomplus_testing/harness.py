"""The slicer-testing stubs as pytest fixtures (filled in below)."""
