"""The DICOMweb transport (PS3.18): a QIDO-RS probe for echo, QIDO-RS queries, STOW-RS sends and
WADO-RS retrieves on a node's DICOMweb endpoint
(:class:`~DICOMPlusLib.network.web.client.DicomwebClient`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from DICOMPlusLib.models import PatientRecord, QueryLevel, StudyRecord
from DICOMPlusLib.network.echo_web import echo_dicomweb
from DICOMPlusLib.network.endpoints import EndpointKind
from DICOMPlusLib.network.find import dicomweb_search
from DICOMPlusLib.network.nodes import RetrieveMethod
from DICOMPlusLib.network.retrieve_web import retrieve_dicomweb
from DICOMPlusLib.network.send_models import FileResult, SendReport
from DICOMPlusLib.network.web.client import DicomwebClient, client_for


class DicomwebTransport:
    kind = EndpointKind.DICOMWEB
    retrieve_methods = frozenset({RetrieveMethod.DICOMWEB})

    def echo(self, node, *, calling_ae_title, timeout, cancel=None):
        return echo_dicomweb(node, timeout=timeout, cancel=cancel)

    def query(
        self, node, level, criteria, *, model, calling_ae_title, limit, cancel, timeout, return_keys, report
    ):
        client = client_for(node, timeout=timeout, cancel=cancel)
        if level is not QueryLevel.PATIENT:
            yield from dicomweb_search(client, level, criteria, limit=limit, report=report)
            return
        yield from patients_of_studies(client, criteria, limit)

    def send(self, node, items, options, *, progress, cancel, failures):
        """STOW-RS of the items' files, in batches; each file's outcome as a FileResult."""
        started = time.monotonic()
        total = len(items) + len(failures)

        def counted(count: int, _expected: int, current: str) -> None:
            if progress is not None:
                progress(len(failures) + count, total, current)

        stored = client_for(node, timeout=options.timeout, cancel=cancel).store(
            [item.path for item in items], progress=counted, cancel=cancel
        )
        done_sops = set(stored.done)
        results = list(failures)
        for item in items:
            reason = stored.failed.get(item.sop_instance_uid) or stored.failed.get(item.path)
            if item.sop_instance_uid in done_sops:
                results.append(FileResult(item.path, item.sop_instance_uid, "success", None, "stored", 1))
            elif reason is not None:
                results.append(FileResult(item.path, item.sop_instance_uid, "failure", None, reason, 1))
            else:
                results.append(FileResult(item.path, item.sop_instance_uid, "cancelled", None, "not sent"))
        return SendReport(node=node.name, results=results, cancelled=stored.cancelled,
                          seconds=time.monotonic() - started, transport=self.kind.value)  # fmt: skip

    def retrieve(self, node, db, request, method, options, *, progress, cancel):
        return retrieve_dicomweb(node, db, request, options, progress=progress, cancel=cancel)


def patients_of_studies(
    client: DicomwebClient, criteria: Mapping[str, str], limit: int | None
) -> Iterator[PatientRecord]:
    """QIDO-RS has no patient level: the distinct patients of the matching studies."""
    seen: set[str] = set()
    for study in dicomweb_search(client, QueryLevel.STUDY, criteria):
        assert isinstance(study, StudyRecord)  # a study-level search yields StudyRecords
        if study.PatientID in seen:
            continue
        seen.add(study.PatientID)
        yield PatientRecord(PatientID=study.PatientID, PatientName=study.PatientName,
                            PatientBirthDate=study.PatientBirthDate, PatientSex=study.PatientSex)  # fmt: skip
        if limit is not None and len(seen) >= limit:
            return
