"""Query/retrieve building blocks without a PACS: identifiers and their character sets, command
sets, presentation-context planning within 128, retrieve units, selection, the per-node cap,
reports, and the errors a user sees when nothing (or something mute) listens.

Expected values come from the Standard's rules (PS3.4 C.4, PS3.7 E, PS3.8 9.3.2.2) and from pydicom
decoding, not from the code under test."""

from __future__ import annotations

import socket
import threading

import pydicom
import pytest

from dicomplus_testing.util import free_port
from DICOMPlusLib.errors import ProtocolError, QueryError, RetrieveError
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.models import QueryLevel, SeriesRecord, StudyRecord
from DICOMPlusLib.network.dimse import identifiers, qrscu
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode, RetrieveMethod
from DICOMPlusLib.network.query import (
    QueryResults,
    Selection,
    build_identifier,
    normalize_criteria,
    query,
    record_from_identifier,
)
from DICOMPlusLib.network.retrieve import (
    Plan,
    PlannedInstance,
    RetrieveReport,
    make_units,
    node_limit,
    node_slot,
    resolve_method,
    set_node_limit,
)
from DICOMPlusLib.network.retrieve_dimse import (
    MAX_CONTEXTS,
    RICH_SYNTAXES,
    move_setup_hint,
    storage_context_groups,
)
from DICOMPlusLib.network.retrieve_plan import Unit
from DICOMPlusLib.network.web.client import TransferReport

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


# -- identifiers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT])
def test_identifier_round_trip_in_utf8(ts):
    ident = build_identifier(
        QueryLevel.STUDY, {"PatientName": "Müller^Jürgen*", "StudyDate": "20240101-20241231"}
    )
    data = qrscu.encode_identifier(ident, ts)
    # decoded independently with pydicom's own reader
    back = pydicom.filereader.read_dataset(pydicom.filebase.DicomBytesIO(data), ts == IMPLICIT, True)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.QueryRetrieveLevel == "STUDY"
    assert str(back.PatientName) == "Müller^Jürgen*"
    assert back.StudyDate == "20240101-20241231"
    # every study-level return key is asked for, empty (PS3.4 C.2.2.1.2)
    for keyword in (
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "AccessionNumber",
    ):
        assert keyword in back and back[keyword].value in (None, "", b"")
    assert b"M\xc3\xbcller" in data  # UTF-8 on the wire


def test_study_level_modality_becomes_modalities_in_study():
    assert normalize_criteria(QueryLevel.STUDY, {"Modality": "CT"}) == {"ModalitiesInStudy": "CT"}
    assert normalize_criteria(QueryLevel.SERIES, {"Modality": "CT"}) == {"Modality": "CT"}
    with pytest.raises(QueryError, match="unknown DICOM keyword"):
        normalize_criteria(QueryLevel.STUDY, {"PatientNmae": "x"})


def _response_bytes(charset: str | None, name_bytes: bytes) -> bytes:
    """An identifier as a (possibly non-conformant) SCP writes it: raw PN bytes."""
    out = b""
    if charset is not None:
        value = charset.encode() + (b" " if len(charset) % 2 else b"")
        out += b"\x08\x00\x05\x00CS" + len(value).to_bytes(2, "little") + value
    out += b"\x08\x00\x52\x00CS\x06\x00STUDY "
    value = name_bytes + (b" " if len(name_bytes) % 2 else b"")
    out += b"\x10\x00\x10\x00PN" + len(value).to_bytes(2, "little") + value
    return out


@pytest.mark.parametrize(
    ("charset", "raw", "expected"),
    [
        ("ISO_IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
        ("ISO_IR 192", "Παπαδόπουλος^Γιώργος".encode(), "Παπαδόπουλος^Γιώργος"),
        ("ISO_IR 126", "Παπαδόπουλος".encode("iso8859_7"), "Παπαδόπουλος"),
        (None, "山田^太郎".encode(), "山田^太郎"),  # undeclared but valid UTF-8
        (None, "Müller".encode("latin-1"), "Müller"),  # undeclared, not UTF-8: Latin-1
        (None, b"DOE^JOHN", "DOE^JOHN"),
    ],
)
def test_response_decoded_with_its_character_set(charset, raw, expected):
    ds = qrscu.decode_identifier(_response_bytes(charset, raw), EXPLICIT)
    record = record_from_identifier(QueryLevel.PATIENT, ds)
    assert record.PatientName == expected


def test_record_from_identifier_keeps_extra_keys_and_tolerates_missing_ones():
    ds = pydicom.Dataset()
    ds.SeriesInstanceUID = "1.2.3"
    ds.Modality = "MR"
    ds.SeriesNumber = "7"
    ds.ProtocolName = "T1 MPRAGE"
    ds.RetrieveAETitle = "PACS"
    record = record_from_identifier(QueryLevel.SERIES, ds, ["ProtocolName", "RetrieveAETitle"])
    assert record == SeriesRecord(SeriesInstanceUID="1.2.3", Modality="MR", SeriesNumber=7)
    assert record.extra == {"ProtocolName": "T1 MPRAGE"}
    assert record.NumberOfSeriesRelatedInstances is None  # absent (dcmqrscp omits such keys)


def test_query_request_and_cancel_command_sets():
    rq = dimse.decode_command(
        dimse.query_request(dimse.C_MOVE_RQ, 7, qrscu.STUDY_ROOT_MOVE, move_destination="ME")
    )
    assert rq.field == 0x0021 and rq.message_id == 7 and rq.has_data_set
    assert rq.get(dimse.MOVE_DESTINATION) == "ME"
    assert rq.get(dimse.AFFECTED_SOP_CLASS_UID) == qrscu.STUDY_ROOT_MOVE
    cancel = dimse.decode_command(dimse.cancel_request(7))
    assert cancel.field == 0x0FFF and cancel.get(dimse.MESSAGE_ID_BEING_RESPONDED_TO) == 7
    assert not cancel.has_data_set
    # a C-GET-RSP with sub-operation counts (US, PS3.7 E.1-1) is read back as numbers
    rsp = dimse.encode_command({dimse.COMMAND_FIELD: dimse.C_GET_RSP, dimse.MESSAGE_ID_BEING_RESPONDED_TO: 7,
                                dimse.COMMAND_DATA_SET_TYPE: dimse.NO_DATA_SET, dimse.STATUS: 0xFF00,
                                dimse.NUMBER_OF_REMAINING_SUBOPERATIONS: 290,
                                dimse.NUMBER_OF_COMPLETED_SUBOPERATIONS: 10})  # fmt: skip
    subs = qrscu.Response(0xFF00, dimse.decode_command(rsp)).suboperations
    assert (subs.remaining, subs.completed, subs.failed, subs.total) == (290, 10, 0, 300)


# -- presentation contexts -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 8, 9, 15, 16, 31, 32, 100, 300])
def test_storage_contexts_fit_in_one_association(n):
    classes = [f"1.2.840.10008.5.1.4.1.1.{k}" for k in range(n)]
    groups = storage_context_groups(classes)
    assert set().union(*(g.sop_classes for g in groups)) == set(classes)
    for g in groups:
        assert len(g.contexts) + 2 <= MAX_CONTEXTS  # plus the C-GET model and Verification
        assert all(len(ts) == 1 for _, ts in g.contexts)  # one transfer syntax per context
        for c in g.sop_classes:  # every class can come uncompressed and in JPEG 2000
            offered = {ts[0] for a, ts in g.contexts if a == c}
            assert {EXPLICIT, IMPLICIT, "1.2.840.10008.1.2.4.90"} <= offered
    if n <= 8:
        assert len(groups) == 1 and len(groups[0].contexts) == n * len(RICH_SYNTAXES)
    assert len(groups) == 1 or n > 31


def test_default_contexts_when_the_pacs_does_not_name_the_classes():
    (group,) = storage_context_groups([])
    assert group.default and len(group.contexts) + 2 <= MAX_CONTEXTS
    assert {ts[0] for a, ts in group.contexts if a == "1.2.840.10008.5.1.4.1.1.2"} >= {
        EXPLICIT, "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80",
    }  # fmt: skip


# -- units ---------------------------------------------------------------------------------------
def _plan(series_sizes: dict[str, int], *, whole_study: str | None = "S", whole=True) -> Plan:
    instances = [PlannedInstance("S", se, f"{se}.{k}", "1.2.840.10008.5.1.4.1.1.2")
                 for se, n in series_sizes.items() for k in range(n)]  # fmt: skip
    return Plan(series={se: "S" for se in series_sizes}, whole_series=set(series_sizes) if whole else set(),
                whole_study=whole_study, instances=instances)  # fmt: skip


def test_units_whole_study_series_and_missing_instances():
    plan = _plan({"A": 3, "B": 2})
    (unit,) = make_units(plan, set())
    assert unit.level == "STUDY" and set(unit.expected) == {"A.0", "A.1", "A.2", "B.0", "B.1"}
    units = make_units(plan, {"A.0", "A.1", "A.2"})  # A is here: only B, as a series
    assert [(u.level, u.series) for u in units] == [("SERIES", ("B",))]
    units = make_units(plan, {"A.1"})  # A partly here: exactly its missing instances
    by_level = {u.level: u for u in units}
    assert sorted(by_level) == ["IMAGE", "SERIES"] and len(units) == 2
    assert by_level["IMAGE"].sops == ("A.0", "A.2") and by_level["SERIES"].series == ("B",)
    assert make_units(plan, {"A.0", "A.1", "A.2", "B.0", "B.1"}) == []


def test_units_for_a_selection_of_instances_never_grow_to_the_series():
    plan = Plan(
        series={"1.2.3": "1.2"},
        instances=[PlannedInstance("1.2", "1.2.3", sop) for sop in ("1.2.3.1", "1.2.3.2")],
    )
    (unit,) = make_units(plan, set())
    assert unit.level == "IMAGE" and unit.sops == ("1.2.3.1", "1.2.3.2")
    ident = _as_sent(unit)
    assert ident.QueryRetrieveLevel == "IMAGE" and ident.SeriesInstanceUID == "1.2.3"
    assert list(ident.SOPInstanceUID) == ["1.2.3.1", "1.2.3.2"]  # a list of UIDs (PS3.4 C.4.3.2.1)


def test_units_chunk_long_uid_lists_and_balance_parallel_work():
    plan = _plan({"A": 450}, whole_study=None, whole=False)
    units = make_units(plan, set())
    assert [len(u.sops) for u in units] == [200, 200, 50]
    plan = _plan({"A": 100, "B": 10})
    units = make_units(plan, set(), parallel=3)
    assert len(units) >= 3 and sorted(s for u in units for s in u.expected) == sorted(
        i.sop for i in plan.instances
    )


def _as_sent(unit: Unit, transfer_syntax: str = qrscu.IMPLICIT_LE) -> pydicom.Dataset:
    """The unit's identifier as it goes on the wire (encoded without pydicom), read by pydicom."""
    from io import BytesIO

    from pydicom.filereader import read_dataset

    data = identifiers.encode(unit.identifier(), transfer_syntax)
    return read_dataset(BytesIO(data), transfer_syntax == qrscu.IMPLICIT_LE, True)


@pytest.mark.parametrize("transfer_syntax", [qrscu.IMPLICIT_LE, qrscu.EXPLICIT_LE])
def test_unit_identifier_levels(transfer_syntax):
    assert _as_sent(Unit("STUDY", "1.2"), transfer_syntax).QueryRetrieveLevel == "STUDY"
    ident = _as_sent(Unit("SERIES", "1.2", ("1.2.3", "1.2.4")), transfer_syntax)
    assert list(ident.SeriesInstanceUID) == ["1.2.3", "1.2.4"] and "SOPInstanceUID" not in ident
    assert ident.StudyInstanceUID == "1.2" and ident.QueryRetrieveLevel == "SERIES"


@pytest.mark.parametrize("transfer_syntax", [qrscu.IMPLICIT_LE, qrscu.EXPLICIT_LE])
def test_plain_identifiers_are_read_past_sequences(transfer_syntax):
    """A response identifier written by pydicom, with sequences of defined and undefined length
    before and after the keys asked for: the plain decoder finds exactly those keys."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.CodeValue, item.CodeMeaning = "121", "x" * 33
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.9"
    item.ReferencedSOPSequence = Sequence([inner])
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.ProcedureCodeSequence = Sequence([item, item])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.FailedSOPInstanceUIDList = ["1.2.7", "1.2.8"]
    ds.RequestAttributesSequence = Sequence([item])
    for undefined in (False, True):
        for sequence in (ds.ProcedureCodeSequence, ds.RequestAttributesSequence, item.ReferencedSOPSequence):
            sequence.is_undefined_length = undefined
            for member in sequence:
                member.is_undefined_length_sequence_item = undefined
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, transfer_syntax == qrscu.IMPLICIT_LE
        write_dataset(buf, ds)
        keys = ("SOPInstanceUID", "SOPClassUID", "FailedSOPInstanceUIDList", "StudyInstanceUID")
        assert identifiers.decode(buf.getvalue(), transfer_syntax, keys) == {
            "SOPInstanceUID": "1.2.3.4.5",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
            "FailedSOPInstanceUIDList": "1.2.7\\1.2.8",
        }
    with pytest.raises(ProtocolError):
        identifiers.decode(buf.getvalue()[:-3], transfer_syntax, keys)


def test_selection_requests():
    sel = Selection(
        studies=frozenset({"S1"}),
        series={"S1": frozenset({"X"}), "S2": frozenset({"Y", "Z"})},
        instances={("S2", "Y"): frozenset({"i"}), ("S3", "W"): frozenset({"j", "k"})},
    )
    assert sel.requests() == [
        {"study_uid": "S1"},
        {"study_uid": "S2", "series_uids": ["Y", "Z"]},
        {"study_uid": "S3", "series_uids": ["W"], "sop_instance_uids": ["j", "k"]},
    ]
    assert Selection().empty


def test_query_results_selection_and_patient_selection():
    studies = [
        StudyRecord("S1", PatientID="P1"),
        StudyRecord("S2", PatientID="P1"),
        StudyRecord("S3", PatientID="P2"),
    ]

    class Source:
        name = "fake"

        def __init__(self):
            self.calls = []

        def search(self, level, criteria=None, *, limit=None):
            self.calls.append(QueryLevel.parse(level))
            if QueryLevel.parse(level) is QueryLevel.STUDY:
                return iter(studies)
            return iter([SeriesRecord("X1"), SeriesRecord("X2")])

    source = Source()
    results = QueryResults(RemoteNode("n", DimseEndpoint("AE", "127.0.0.1", 104)), source=source)
    assert results.studies() == studies and results.studies() == studies
    results.series("S3")
    results.series("S3")
    assert source.calls == [QueryLevel.STUDY, QueryLevel.SERIES]  # cached, lazy
    assert results.series("S3")[0].StudyInstanceUID == "S3" and results.series("S3")[0].PatientID == "P2"
    assert [p.PatientID for p in results.patients()] == ["P1", "P2"]
    results.select(patient_id="P1")
    results.select(series_uid="X1")  # of the expanded study S3
    assert results.selection.requests() == [
        {"study_uid": "S1"}, {"study_uid": "S2"}, {"study_uid": "S3", "series_uids": ["X1"]},
    ]  # fmt: skip
    results.deselect(study_uid="S2")
    results.deselect(series_uid="X1")
    assert results.selection.requests() == [{"study_uid": "S1"}]
    results.clear_selection()
    assert results.selection.empty


# -- methods, caps, reports ------------------------------------------------------------------------
def test_resolve_method():
    node = RemoteNode("n", DimseEndpoint("AE", "127.0.0.1", 104), retrieve_method=RetrieveMethod.C_MOVE)
    assert resolve_method(None, node) is RetrieveMethod.C_MOVE
    assert resolve_method("get", node) is RetrieveMethod.C_GET
    assert resolve_method("C-MOVE", node) is RetrieveMethod.C_MOVE
    assert resolve_method("dicomweb", node) is RetrieveMethod.DICOMWEB
    with pytest.raises(RetrieveError, match="get, move or dicomweb"):
        resolve_method("ftp", node)


def test_node_slots_cap_parallel_associations():
    node = RemoteNode("capped", DimseEndpoint("CAP", "127.0.0.1", free_port()))
    set_node_limit(node, 2)
    assert node_limit(node) == 2
    token = CancelToken()
    inside, release, entered = [], threading.Event(), threading.Semaphore(0)

    def hold(k):
        with node_slot(node, token):
            inside.append(k)
            entered.release()
            release.wait()

    threads = [threading.Thread(target=hold, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    entered.acquire()
    entered.acquire()
    assert not entered.acquire(timeout=0.3)  # the third waits for a free slot
    assert len(inside) == 2
    release.set()
    for t in threads:
        t.join()
    assert sorted(inside) == [0, 1, 2]
    token.cancel()  # a cancelled waiter gives up instead of waiting for a slot
    with node_slot(node, CancelToken()), node_slot(node, CancelToken()):
        with pytest.raises(Exception, match="cancelled"), node_slot(node, token):
            pass


def test_report_shape_and_merge():
    report = RetrieveReport(done=["a"], skipped=["b"], expected=3, node="n", method="C-GET")
    report.failed["c"] = "did not arrive"
    assert not report.complete
    data = report.to_dict()
    assert {"done", "skipped", "failed", "expected", "cancelled", "complete"} <= set(data)
    assert data["done"] == 1 and data["method"] == "C-GET"
    report.merge(TransferReport(done=["c"], expected=1))
    assert report.expected == 4 and report.done == ["a", "c"]
    assert isinstance(report, TransferReport)


def test_move_hint_names_everything_to_configure():
    hint = move_setup_hint(
        RemoteNode("pacs", DimseEndpoint("PACS", "10.0.0.5", 104)), "DICOMPLUS", "10.0.0.9", 11112
    )
    for text in ("DICOMPLUS", "10.0.0.9", "11112", "DicomModalities", "HostTable", "AETable", "C-GET"):
        assert text in hint
    lines = hint.splitlines()
    assert (
        "  dcm4chee-arc: Configuration > AE list > New AE: AE title DICOMPLUS, hostname 10.0.0.9, port 11112"
        " (an external, non-archive AE)" in lines
    )
    # one line per PACS, as the README shows them: a user reads and pastes the one for theirs
    assert [line.split(":")[0] for line in lines[1:4]] == ["  Orthanc", "  dcm4chee-arc", "  DCMTK dcmqrscp"]


# -- errors without a PACS -------------------------------------------------------------------------
def test_query_refused_when_nothing_listens():
    node = RemoteNode("nobody", DimseEndpoint("NOBODY", "127.0.0.1", free_port()))
    with pytest.raises(QueryError, match="nothing listens"):
        list(query(node, "study"))


def test_query_to_a_mute_peer_times_out_with_a_clear_message():
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    try:
        node = RemoteNode("mute", DimseEndpoint("MUTE", "127.0.0.1", server.getsockname()[1]))
        with pytest.raises(QueryError, match="did not answer the association request"):
            list(query(node, "study", timeout=0.5))
    finally:
        thread.join(5)
        for conn, _ in accepted:
            conn.close()
        server.close()


def test_query_rejects_bad_arguments():
    node = RemoteNode("n", DimseEndpoint("AE", "127.0.0.1", free_port()))
    with pytest.raises(QueryError, match="unknown level"):
        list(query(node, "frame"))
    with pytest.raises(QueryError, match="information model"):
        list(query(node, "study", model="worklist"))
    assert list(query(node, "study", limit=0)) == []
