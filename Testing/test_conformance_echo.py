"""Echo to a DICOMweb node (issue 17, item 11): a QIDO-RS probe with a diagnosis, against
Orthanc's DICOMweb plugin, instead of a DIMSE PDU sent to an HTTP port."""

from __future__ import annotations

import subprocess
import sys

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.network.echo import EchoProblem, echo
from DICOMPlusLib.network.nodes import RemoteNode


def web_node(url: str, user: str = "", password: str = "") -> RemoteNode:
    return RemoteNode.dicomweb("web", url, user=user, password=password)


def test_echo_a_dicomweb_node_is_a_qido_probe(orthanc_session):
    result = echo(web_node(orthanc_session.dicomweb_url))
    assert result.ok, result.message
    assert "QIDO-RS" in result.message


def test_echo_a_dicomweb_node_diagnoses_what_fails(orthanc_factory):
    refused = echo(web_node(f"http://{LOOPBACK}:{free_port()}/dicom-web"), timeout=5)
    assert not refused.ok and refused.problem is EchoProblem.REFUSED
    secured = orthanc_factory(config={"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    anonymous = echo(web_node(secured.dicomweb_url))
    assert (
        not anonymous.ok
        and anonymous.problem is EchoProblem.UNAUTHORIZED
        and "no credentials" in anonymous.message
    )
    wrong = echo(web_node(secured.dicomweb_url, user="alice", password="wrong"))
    assert wrong.problem is EchoProblem.UNAUTHORIZED and "check them" in wrong.message
    good = echo(web_node(secured.dicomweb_url, user="alice", password="secret"))
    assert good.ok, good.message
    not_root = echo(web_node(secured.url + "/system", user="alice", password="secret"))
    assert not not_root.ok and not_root.problem is EchoProblem.NOT_DICOMWEB


def test_cli_echo_of_a_dicomweb_node(orthanc_session, tmp_path):
    nodes = tmp_path / "nodes.json"
    cli = [sys.executable, "-m", "DICOMPlusLib.cli"]
    add = subprocess.run([*cli, "nodes", "add", "web", "--dicomweb", orthanc_session.dicomweb_url, "--nodes", nodes],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)  # fmt: skip
    assert add.returncode == 0, add.stderr
    proc = subprocess.run([*cli, "echo", "web", "--nodes", nodes], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answered a QIDO-RS query" in proc.stdout
