"""The few SQL spellings that differ between SQLite and PostgreSQL.

Searching builds one SQL text for both back ends (:mod:`search`, :mod:`matching`); where the two
servers spell a rule differently, the builder asks the dialect. Everything else is the same SQL,
with ``?`` placeholders: the PostgreSQL connection rewrites them to psycopg's ``%s``
(:func:`DICOMPlusLib.database.pg_connection.translate`), so no SQL fragment may contain a literal
``?`` of its own (regular expressions below write ``{0,1}`` instead).
"""

from __future__ import annotations

import sqlite3


class Dialect:
    """SQLite's spellings (the embedded default)."""

    name = "sqlite"
    #: ``LIMIT`` value meaning "no limit" (with an ``OFFSET``).
    no_limit = "-1"
    #: ``UPDATE ... RETURNING`` (SQLite 3.35, 2021; PostgreSQL always): with an older SQLite
    #: library (a Python built against one) the counts' refresh looks a series' study up in a
    #: second statement.
    returning = sqlite3.sqlite_version_info >= (3, 35, 0)

    def wildcard(self, column: str, pattern: str) -> tuple[str, list[object]]:
        """``*``/``?`` matching (PS3.4 C.2.2.2.4), case-sensitive, every other character literal.
        GLOB treats only ``* ? [`` specially: escape ``[``."""
        return f"{column} GLOB ?", [pattern.replace("[", "[[]")]

    def starts_with_digit(self, column: str) -> str:
        return f"{column} GLOB '[0-9]*'"

    def text(self, column: str) -> str:
        """``column`` compared byte by byte (range bounds)."""
        return column

    def number(self, column: str) -> str:
        """``column`` as a number, for numeric single-value matching."""
        return f"CAST({column} AS REAL)"

    def contains(self, column: str) -> str:
        """Case-insensitive substring test against one lower-case parameter."""
        return f"instr(lower({column}), ?) > 0"

    def contains_exactly(self, column: str) -> str:
        """Case-sensitive substring test against one parameter."""
        return f"instr({column}, ?) > 0"

    def modalities_of_study(self) -> str:
        """The study's distinct series modalities, sorted and joined by ``\\`` (its
        ModalitiesInStudy), for one StudyInstanceUID parameter."""
        return (
            "(SELECT COALESCE(group_concat(Modality, '\\'),'') FROM"
            " (SELECT DISTINCT Modality FROM series WHERE StudyInstanceUID=? AND Modality!='' ORDER BY Modality))"
        )


class PostgresDialect(Dialect):
    name = "postgresql"
    no_limit = "ALL"
    returning = True

    def wildcard(self, column: str, pattern: str) -> tuple[str, list[object]]:
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = escaped.replace("*", "%").replace("?", "_")
        return f"CAST({column} AS text) LIKE ? ESCAPE '\\'", [like]

    def starts_with_digit(self, column: str) -> str:
        return f"{column} COLLATE \"C\" >= '0' AND {column} COLLATE \"C\" < ':'"

    def text(self, column: str) -> str:
        return f'{column} COLLATE "C"'

    def number(self, column: str) -> str:
        # A stored value that is not a number (a header's free text) is NULL here, not an error.
        text = f"CAST({column} AS text)"
        return (
            f"(CASE WHEN {text} ~ '^\\s*[-+]{{0,1}}([0-9]+[.]{{0,1}}[0-9]*|[.][0-9]+)([eE][-+]{{0,1}}[0-9]+){{0,1}}\\s*$'"
            f" THEN CAST({text} AS double precision) END)"
        )

    def contains(self, column: str) -> str:
        return f"strpos(lower({column}), ?) > 0"

    def contains_exactly(self, column: str) -> str:
        return f"strpos({column}, ?) > 0"

    def modalities_of_study(self) -> str:
        return (
            "(SELECT COALESCE(string_agg(Modality, '\\' ORDER BY Modality),'') FROM"
            " (SELECT DISTINCT Modality FROM series WHERE StudyInstanceUID=? AND Modality!='') AS m)"
        )


SQLITE = Dialect()
POSTGRES = PostgresDialect()
