"""The module's Logic, with the real engine, echoes and sends to a DICOMweb node (issue 15,
item 2): the engine calls the library's ``echo`` and ``send``, which reach Orthanc's DICOMweb
plugin by a QIDO-RS probe and STOW-RS (before, the Logic tried DIMSE at the node's placeholder
AE title, host and port)."""

from __future__ import annotations

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port


def test_logic_echo_and_send_to_a_dicomweb_node(dicomplus_module, orthanc_session, tmp_path):
    from DICOMPlusLib.network.echo import EchoProblem
    from DICOMPlusLib.network.nodes import RemoteNode
    from DICOMPlusLib.network.query import query

    logic = dicomplus_module.DICOMPlusLogic(
        databasePath=tmp_path / "db.sqlite", nodesPath=tmp_path / "n.json"
    )
    try:
        series = make_series(tmp_path / "s", n=3, rows=8, cols=8, seed=154)
        logic.importFolder([series.folder]).get(60)
        logic.addDicomwebNode("web", orthanc_session.dicomweb_url)
        logic.addDicomwebNode("dead", f"http://127.0.0.1:{free_port()}/dicom-web")
        result = logic.echo("web").get(30)
        assert result.ok and "QIDO-RS" in result.message, result.message
        dead = logic.echo("dead", timeout=5).get(30)
        assert not dead.ok and dead.problem is EchoProblem.REFUSED
        report = logic.send("web", series=series.series_uid).get(60)
        assert report.sent == 3 and report.ok and report.transport == "DICOMweb", report.to_dict()
        node = RemoteNode.dicomweb("check", orthanc_session.dicomweb_url)
        found = {i.SOPInstanceUID for i in query(node, "instance", {"SeriesInstanceUID": series.series_uid})}
        assert found == set(series.sop_uids)
    finally:
        logic.closeDatabase()
