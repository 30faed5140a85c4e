"""Closing a database while another thread writes to it (an engine ending under a retrieve whose
commit follows its answer, a library caller's ``close()``): the close waits for the write to end.
Before, the writer's connection was closed under it: its next statement failed ("Cannot operate
on a closed database") or, inside SQLite, the process crashed (a segmentation fault)."""

from __future__ import annotations

import sqlite3
import threading

from DICOMPlusLib.database import Database


def test_close_waits_for_a_write_under_way(tmp_path):
    db = Database(tmp_path / "db")
    inside, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with db.write() as conn:
                inside.set()
                go_on.wait(10)
                conn.execute("INSERT INTO patients (PatientID, PatientName) VALUES ('P', 'N')")
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(10)
    closer = threading.Thread(target=db.close)
    closer.start()
    closer.join(0.5)
    closing_waited = closer.is_alive()  # the write has not ended: close must not have closed it
    go_on.set()
    writer.join(10)
    closer.join(10)
    assert not writer.is_alive() and not closer.is_alive()
    assert errors == []
    assert closing_waited
    conn = sqlite3.connect(tmp_path / "db" / "dicomplus.sqlite")
    try:  # the write committed before the close
        assert conn.execute("SELECT PatientID FROM patients").fetchall() == [("P",)]
    finally:
        conn.close()


def test_close_inside_a_write_of_the_same_thread_does_not_wait(tmp_path):
    db = Database(tmp_path / "db")
    done = threading.Event()

    def write_then_close() -> None:
        try:
            with db.write():
                db.close()
        except Exception:  # the write's connection is closed: its COMMIT fails
            pass
        done.set()

    threading.Thread(target=write_then_close, daemon=True).start()
    assert done.wait(10)
