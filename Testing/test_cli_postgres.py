"""The CLI over a PostgreSQL database names it by its URL, without the password: never by
``PostgresDatabase.path`` (a marker inside the store, ``<store>/.dicomplus-postgresql``, that does
not exist and is no place to look)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.cli import Exit, main
from DICOMPlusLib.database import open_database
from DICOMPlusLib.database.pg_connection import redact
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP

SECRET = "s3cret-pw"  # the test server trusts loopback: the password is accepted and unused


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{SECRET}@{host}"


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out + err


def test_commands_name_the_database_by_its_redacted_url(postgres_url, tmp_path, capsys):
    url = _with_password(postgres_url)
    shown = redact(url)
    assert SECRET not in shown and shown.startswith("postgresql://")
    series = make_series(tmp_path / "ct", n=2, rows=8, cols=8, patient_id="PGCLI", seed=5)
    db = ("--db", url, "--store", tmp_path / "store")

    code, out = _run(capsys, *db, "import", series.folder)
    assert code == Exit.OK and out.rstrip().endswith(f"({shown})"), out
    code, out = _run(capsys, "--db", url, "info")
    assert code == Exit.OK and f"database: {shown}" in out
    code, out = _run(capsys, "--db", url, "delete", "--study", "1.2.3")
    assert code == Exit.FAILED and f"no study 1.2.3 in {shown} " in out
    for command in (("search", "--json"), ("info", "--json"), ("delete", "--series", "1.2", "--json")):
        _, out = _run(capsys, "--db", url, *command)
        assert ".dicomplus-postgresql" not in out and SECRET not in out, (command, out)

    with open_database(url) as opened:
        server = QueryRetrieveSCP(opened, QRConfig(port=0, host=LOOPBACK)).start()
        try:
            assert server.describe()["database"] == shown
        finally:
            server.stop()

    proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", "--db", url, "listen", "--port", "0",
                             "--host", LOOPBACK, "--json"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        event = json.loads(proc.stdout.readline() if proc.stdout else "{}")
        assert event["event"] == "listening" and event["database"] == shown, event
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == Exit.OK
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
