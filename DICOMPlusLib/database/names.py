"""Person names (PN) as every path compares them: the column an index stores, a stored header, a
network key. Apart from :mod:`.matching` (which re-exports it) so that writing rows, which needs
only this, does not import the matching machinery (an import of files never matches anything).
"""

from __future__ import annotations


def normalize_pn(value: str) -> str:
    """A person name as it compares: without case, without trailing empty components in each
    component group and without trailing empty groups (PS3.5 6.2.1.1 lets a writer omit them,
    so ``Doe^John^^=`` and ``Doe^John`` are one name)."""
    groups = [g.rstrip("^ ") for g in str(value).split("=")]
    return "=".join(groups).rstrip("=").casefold()
