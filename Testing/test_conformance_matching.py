"""Network conformance of matching (PS3.4 C.2.2.2): the same cases against five answerers.

The corpus below (made here with pydicom, one study per patient) is loaded into a DICOMPlus
database, served by the sample PACS (``dicomplus serve``) and uploaded to Orthanc. Each case is
then asked of

- ``local``: :meth:`Database.search` (what ``dicomplus search`` runs),
- ``serve``: the sample PACS through DCMTK findscu (C-FIND, Study Root),
- ``orthanc``: Orthanc's C-FIND through DCMTK findscu,
- ``qido``: Orthanc's DICOMweb plugin through :func:`query.query` (QIDO-RS, as ``dicomplus
  query`` asks a DICOMweb node: the request may ask a superset, the answers are re-checked),
- ``query-orthanc``: Orthanc's C-FIND through :func:`query.query` (what ``dicomplus query`` asks
  of a DIMSE node: names without trailing delimiters and as patterns, lists with wildcards split
  into several C-FINDs, full time bounds, every answer re-checked): where Orthanc alone is wrong,
  DICOMPlus querying Orthanc is right,

and every answer set (the PatientIDs of the matched studies) is asserted. ``expected`` is what
PS3.4 asks for; where a peer answers otherwise, ``peers`` records that peer's answer, so a test
documents where Orthanc is wrong (and fails if Orthanc changes). The names are those of the
character-set examples of PS3.5 Annex H-K and of pydicom's charset test files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomplus_testing.backends import BACKENDS, database_for
from dicomplus_testing.peers import LOOPBACK, OUR_AET, OrthancServer, PeerFactory
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.nodes import DicomwebEndpoint, DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.pacs.sample import sample_uid
from DICOMPlusLib.network.query import QueryReport, query

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PACS_AET = "DICOMPLUSPACS"
PRIVATE_CREATOR = "DICOMPLUS TEST"


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    charset: str | list[str]
    study_time: str
    study_date: str
    modalities: tuple[str, ...]
    description: str
    procedure_code: str


CORPUS = (
    Patient("C1", "Doe^Peter", "ISO_IR 100", "093000", "20240315", ("CT", "MR"), "Chest CT", "CTCHEST"),
    Patient("C2", "Doe^Petra", "ISO_IR 100", "093059", "20240316", ("CT",), "Abdomen", "CTABD"),
    Patient("C3", "Wang^XiaoDong=王^小東=", "ISO_IR 192", "100000", "20230101", ("MR",), "Brain", "MRBRAIN"),
    Patient("C4", "Yamada^Tarou=山田^太郎=やまだ^たろう", ["", "ISO 2022 IR 87"], "101500", "20221231",
            ("US",), "Liver", "USLIVER"),
    Patient("C5", "Люкceмбypг", "ISO_IR 144", "113000", "20200601", ("MR",), "Knee", "MRKNEE"),
    Patient("C6", "Müller^Jörg", "ISO_IR 100", "0930", "20240101", ("CT",), "Head", "CTHEAD"),
    Patient("C7", "Doe^Jane^^", "ISO_IR 100", "160000", "20190101", ("OT",), "Chest X", "XRCHEST"),
    Patient("C8", "Buc^Jérôme", "ISO_IR 100", "170000", "20190102", ("MR", "SR"), "Spine", "MRSPINE"),
)  # fmt: skip
ALL = frozenset(p.patient_id for p in CORPUS)


def _uid(*parts: object) -> str:
    return sample_uid("conformance/" + "/".join(map(str, parts)))


def _instance(patient: Patient, index: int, modality: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = patient.charset
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = _uid(patient.patient_id, index, "sop")
    ds.StudyInstanceUID = _uid(patient.patient_id, "study")
    ds.SeriesInstanceUID = _uid(patient.patient_id, index, "series")
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = patient.study_date
    ds.StudyTime = ds.SeriesTime = patient.study_time
    ds.StudyDescription = patient.description
    ds.AccessionNumber = f"ACC-{patient.patient_id}"
    ds.StudyID = patient.patient_id
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = index + 1
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    code = Dataset()
    code.CodeValue = patient.procedure_code
    code.CodingSchemeDesignator = "99DPLUS"
    code.CodeMeaning = patient.description
    ds.ProcedureCodeSequence = [code]
    block = ds.private_block(0x0019, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", f"private {patient.patient_id}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(16))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conformance_corpus")
    for patient in CORPUS:
        for index, modality in enumerate(patient.modalities):
            ds = _instance(patient, index, modality)
            ds.save_as(folder / f"{patient.patient_id}_{index}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def database(corpus, tmp_path_factory):
    db = Database(tmp_path_factory.mktemp("conformance_db") / "db")
    db.import_paths([corpus])
    yield db
    db.close()


@pytest.fixture(scope="module")
def pacs(database):
    server = QueryRetrieveSCP(database, QRConfig(port=0, host=LOOPBACK)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def local_backend(request, corpus, tmp_path_factory):
    """The corpus in a database of each back end, and our Query/Retrieve SCP serving it."""
    db = database_for(request, request.param, tmp_path_factory.mktemp(f"conformance_{request.param}"))
    db.import_paths([corpus])
    server = QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)).start()
    yield db, server
    server.stop()
    db.close()


@pytest.fixture(scope="module")
def orthanc_peer(corpus, tmp_path_factory):
    factory = PeerFactory(OrthancServer, tmp_path_factory)
    server = factory()
    server.upload(corpus)
    yield server
    factory.stop_all()


# --------------------------------------------------------------------------------------------
# The four answerers: each returns the PatientIDs of the studies matching ``keys``
# --------------------------------------------------------------------------------------------


def _findscu(dcmtk, out: Path, called: str, port: int, keys: dict[str, str], extra=()) -> list[Dataset]:
    out.mkdir(parents=True)
    args = ["-S", "-X", "-aet", OUR_AET, "-aec", called, "-k", "QueryRetrieveLevel=STUDY",
            "-k", "SpecificCharacterSet=ISO_IR 192", "-k", "PatientID", "-k", "StudyInstanceUID"]  # fmt: skip
    for keyword, value in keys.items():
        args += ["-k", f"{keyword.replace('.', '[0].')}={value}"]  # DCMTK path: Sequence[0].Keyword
    for key in extra:
        args += ["-k", key]
    dcmtk.run("findscu", *args, LOOPBACK, port, cwd=out)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


class Answerers:
    def __init__(self, database, pacs, orthanc, dcmtk, tmp_path: Path) -> None:
        self.database, self.pacs, self.orthanc, self.dcmtk = database, pacs, orthanc, dcmtk
        self.tmp_path = tmp_path
        self.dimse_node = RemoteNode("orthanc", DimseEndpoint(orthanc.aet, LOOPBACK, orthanc.dicom_port))
        self.web_node = RemoteNode("orthanc-web", web=DicomwebEndpoint(orthanc.dicomweb_url))
        self._n = 0

    def _out(self) -> Path:
        self._n += 1
        return self.tmp_path / f"find{self._n}"

    def local(self, keys: dict[str, str]) -> set[str]:
        return {r.PatientID for r in self.database.search("study", keys)}

    def serve(self, keys: dict[str, str], extra=()) -> list[Dataset]:
        return _findscu(self.dcmtk, self._out(), PACS_AET, self.pacs.port, keys, extra)

    def orthanc_find(self, keys: dict[str, str], extra=()) -> list[Dataset]:
        return _findscu(self.dcmtk, self._out(), self.orthanc.aet, self.orthanc.dicom_port, keys, extra)

    def answers(self, keys: dict[str, str]) -> dict[str, set[str]]:
        return {
            "local": self.local(keys),
            "serve": {str(d.PatientID) for d in self.serve(keys)},
            "orthanc": {str(d.PatientID) for d in self.orthanc_find(keys)},
            "qido": {r.PatientID for r in query(self.web_node, "study", keys)},
            "query-orthanc": {r.PatientID for r in query(self.dimse_node, "study", keys)},
        }


@pytest.fixture
def ask(database, pacs, orthanc_peer, dcmtk, tmp_path) -> Answerers:
    return Answerers(database, pacs, orthanc_peer, dcmtk, tmp_path)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    keys: dict[str, str]
    expected: frozenset[str]
    peers: dict[str, frozenset[str]] = field(default_factory=dict)  # where a peer is wrong: its answer
    why: str = ""


def ids(*names: str) -> frozenset[str]:
    return frozenset(names)


# Orthanc 1.10's DICOMweb plugin returns names without their non-ASCII characters (the
# Ideographic group of Yamada^Tarou=山田^太郎=やまだ^たろう comes back as "^", Люкceмбypг as
# "ceyp"): the superset QIDO request finds the study, but no answer can be confirmed.
QIDO_DROPS_NON_ASCII = "Orthanc's QIDO answers drop non-ASCII characters from names"
# Orthanc takes a sequence matching key (C.2.2.2.6) as universal, in C-FIND and in QIDO-RS
# (``ProcedureCodeSequence.CodeValue=``); the QIDO answers carry no sequence to re-check.
IGNORES_SEQUENCES = {"orthanc": ALL, "qido": ALL}
SEQUENCES_WHY = "Orthanc ignores sequence matching keys"


CASES = [
    Case("universal", {"PatientName": "*"}, ALL),
    Case("single-pn", {"PatientName": "Doe^Peter"}, ids("C1")),
    Case("pn-ignores-case", {"PatientName": "doe^peter"}, ids("C1")),
    Case("pn-prefix-is-not-a-match", {"PatientName": "Doe^Pete"}, ids()),
    Case("wildcard-star", {"PatientName": "Doe*"}, ids("C1", "C2", "C7")),
    Case("wildcard-question", {"PatientName": "Doe^Pet?a"}, ids("C2")),
    Case(
        "pn-trailing-caret-stored",
        {"PatientName": "Doe^Jane"},
        ids("C7"),
        {"orthanc": ids()},
        "Orthanc compares the stored Doe^Jane^^ with its trailing delimiters (PS3.5 6.2.1.1)",
    ),
    Case(
        "pn-ideographic-wildcard", {"PatientName": "*山田*"}, ids("C4"), {"qido": ids()}, QIDO_DROPS_NON_ASCII
    ),
    Case("pn-cyrillic-wildcard", {"PatientName": "Люк*"}, ids("C5"), {"qido": ids()}, QIDO_DROPS_NON_ASCII),
    Case(
        "pn-three-groups",
        {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"},
        ids("C4"),
        {"qido": ids()},
        QIDO_DROPS_NON_ASCII,
    ),
    Case(
        "pn-trailing-group-kept",
        {"PatientName": "Wang^XiaoDong=王^小東="},
        ids("C3"),
        {"orthanc": ids(), "qido": ids()},
        f"Orthanc does not match a name with its (empty) trailing group; {QIDO_DROPS_NON_ASCII}",
    ),
    Case(
        "pn-trailing-group-omitted",
        {"PatientName": "Wang^XiaoDong=王^小東"},
        ids("C3"),
        {"qido": ids()},
        QIDO_DROPS_NON_ASCII,
    ),
    Case(
        "question-mark-accented",
        {"PatientName": "M?ller*"},
        ids("C6"),
        {"orthanc": ids()},
        "Orthanc's ? matches one byte, not one character: it misses ü (two bytes in UTF-8)",
    ),
    Case("accented-single", {"PatientName": "Buc^Jérôme"}, ids("C8")),
    Case("pn-list", {"PatientName": "Doe^Peter\\Buc^Jérôme"}, ids("C1", "C8")),
    Case("date-range", {"StudyDate": "20240101-20241231"}, ids("C1", "C2", "C6")),
    Case("date-open-low", {"StudyDate": "20240316-"}, ids("C2")),
    Case("date-open-high", {"StudyDate": "-20191231"}, ids("C7", "C8")),
    Case(
        "time-upper-bound-short",
        {"StudyTime": "-0930"},
        ids("C1", "C2", "C6"),
        {"orthanc": ids("C6")},
        "Orthanc compares the bound as written: 093000 > 0930 (dcmqrscp includes them)",
    ),
    Case(
        "time-range-short",
        {"StudyTime": "0930-1015"},
        ids("C1", "C2", "C3", "C4", "C6"),
        {"orthanc": ids("C1", "C2", "C3", "C6")},
        "Orthanc misses 101500 (upper bound 1015 as written)",
    ),
    Case("modalities-list", {"ModalitiesInStudy": "CT\\MR"}, ids("C1", "C2", "C3", "C5", "C6", "C8")),
    Case("modalities-single", {"ModalitiesInStudy": "US"}, ids("C4")),
    Case(
        "modalities-wildcard-list",
        {"ModalitiesInStudy": "S?\\O*"},
        ids("C7", "C8"),
        {"orthanc": ids()},
        "Orthanc applies no wildcard inside a list of values (C.2.2.2.8)",
    ),
    Case("uid-list", {"StudyInstanceUID": f"{_uid('C1', 'study')}\\{_uid('C5', 'study')}"}, ids("C1", "C5")),
    Case("description-wildcard", {"StudyDescription": "Chest*"}, ids("C1", "C7")),
    Case("description-list", {"StudyDescription": "Knee\\Head"}, ids("C5", "C6")),
    Case("accession-wildcard", {"AccessionNumber": "ACC-C?"}, ALL),
    Case("combined", {"PatientName": "Doe*", "ModalitiesInStudy": "MR"}, ids("C1")),
    Case(
        "sequence-item-key",
        {"ProcedureCodeSequence.CodeValue": "CTCHEST"},
        ids("C1"),
        IGNORES_SEQUENCES,
        SEQUENCES_WHY,
    ),
    Case(
        "sequence-item-wildcard",
        {"ProcedureCodeSequence.CodeValue": "CT*"},
        ids("C1", "C2", "C6"),
        IGNORES_SEQUENCES,
        SEQUENCES_WHY,
    ),
    Case(
        "sequence-keys-in-one-item",
        {
            "ProcedureCodeSequence.CodeValue": "MRKNEE",
            "ProcedureCodeSequence.CodingSchemeDesignator": "99DPLUS",
        },
        ids("C5"),
        IGNORES_SEQUENCES,
        SEQUENCES_WHY,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matching_case_on_every_answerer(ask, case):
    got = ask.answers(case.keys)
    wrong = {name: sorted(ans) for name, ans in got.items() if ans != case.peers.get(name, case.expected)}
    assert not wrong, f"expected {sorted(case.expected)}, peers {case.peers}; got {wrong}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matching_case_on_the_local_database_of_each_back_end(local_backend, dcmtk, tmp_path, case):
    """The same matching from SQLite and from PostgreSQL (its JSONB elements answer the keys that
    are not columns), searched directly and through our C-FIND SCP."""
    db, server = local_backend
    local = {r.PatientID for r in db.search("study", case.keys)}
    served = {str(d.PatientID) for d in _findscu(dcmtk, tmp_path / "find", PACS_AET, server.port, case.keys)}
    assert local == case.peers.get("local", case.expected), sorted(local)
    assert served == case.peers.get("serve", case.expected), sorted(served)


def test_sequence_and_private_return_keys(ask):
    """A sequence asked as a return key comes back with the stored items; private return keys
    come back (with the stored value when the block's creator is the one asked for)."""
    keys = {"PatientID": "C1"}
    extra = ["ProcedureCodeSequence", f"(0019,0010)={PRIVATE_CREATOR}", "(0019,1010)", "(0029,0010)"]
    for answers in (ask.serve(keys, extra), ask.orthanc_find(keys, extra)):
        assert len(answers) == 1
        codes = [str(item.CodeValue) for item in answers[0].ProcedureCodeSequence]
        assert codes == ["CTCHEST"]
        assert 0x00190010 in answers[0] and 0x00191010 in answers[0]
        assert 0x00290010 in answers[0] and not answers[0][0x00290010].value  # not stored: empty
    (ours,) = ask.serve(keys, extra)
    assert ours[0x00191010].value in (b"private C1", "private C1")


def test_query_leaves_out_answers_that_do_not_match_and_counts_them(orthanc_peer):
    """Orthanc answers a sequence matching key with every study; ``query`` re-checks the
    sequence it returns and keeps the one study that matches."""
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_peer.aet, LOOPBACK, orthanc_peer.dicom_port))
    report = QueryReport()
    found = {
        r.PatientID
        for r in query(node, "study", {"ProcedureCodeSequence.CodeValue": "CTCHEST"}, report=report)
    }
    assert found == {"C1"}
    assert report.received == len(CORPUS) and report.filtered == len(CORPUS) - 1
    assert report.filtered_keys == {"ProcedureCodeSequence.CodeValue": len(CORPUS) - 1}


def test_the_browser_source_of_a_dicomweb_node_rechecks_too(ask):
    """QueryResults asks a DICOMweb node through DicomwebSource: the same requests and re-check
    as ``query`` (``Doe^Pete`` is sent as ``Doe*Pete*``, which Orthanc answers with Doe^Peter)."""
    from DICOMPlusLib.network.sources import source_for

    source = source_for(ask.web_node)
    assert [r.PatientID for r in source.search("study", {"PatientName": "Doe^Pete"})] == []
    assert [r.PatientID for r in source.search("study", {"PatientName": "Doe^Peter"})] == ["C1"]
    assert [r.PatientID for r in source.search("patient", {"PatientName": "Doe^Peter"})] == ["C1"]


def test_qido_query_strings_are_rfc3986_and_readable_by_orthanc():
    """The forms the QIDO cases above send (checked against Orthanc 1.10 there): lists with
    commas, no percent-escape in matching values, full time bounds, lists with wildcards split."""
    import re

    from DICOMPlusLib.network.web.qido import qido_split, query_string

    sent = query_string({
        "PatientName": "Wang^XiaoDong=王^小東=",
        "ModalitiesInStudy": "CT\\MR",
        "StudyInstanceUID": "1.2.3\\1.2.4",
        "StudyDescription": "Chest CT",
        "StudyTime": "-0930",
        "includefield": "00100010,00100020",
    })  # fmt: skip
    assert sent == (
        "PatientName=Wang*XiaoDong=*&ModalitiesInStudy=CT,MR&StudyInstanceUID=1.2.3,1.2.4"
        "&StudyDescription=Chest*CT&StudyTime=-093059.999999&includefield=00100010,00100020"
    )
    assert re.fullmatch(r"[A-Za-z0-9\-._~*?,=&%]*", sent)  # RFC 3986 query characters only
    assert qido_split({"ModalitiesInStudy": "S?\\O*", "PatientID": "C1"}) == [
        {"ModalitiesInStudy": "S?", "PatientID": "C1"},
        {"ModalitiesInStudy": "O*", "PatientID": "C1"},
    ]
    assert qido_split({"ModalitiesInStudy": "CT\\MR"}) == [{"ModalitiesInStudy": "CT\\MR"}]
