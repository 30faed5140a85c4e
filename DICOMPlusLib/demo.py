"""``dicomplus demo``: the whole workflow on loopback, in under a minute, leaving files to look at.

A sample PACS (the same one ``dicomplus serve --sample`` runs) is started in this process on a free
port of 127.0.0.1, with its own database in a temporary folder. Then, as a user would:
query its studies and series (C-FIND), retrieve one CT series by C-GET into a second, local
database, load it as a volume and write NRRD, export the volume back as a new DICOM series of the
same study and send it to the PACS (C-STORE), check the PACS now lists it, save a Slicer Data
Bundle into the study, and write a PNG contact sheet of the local series' thumbnails. Everything it
started is stopped before it returns, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import DICOMPlusError


@dataclass
class DemoSummary:
    """What ``make demo`` did, for its closing summary."""

    out_dir: Path
    pacs: str = ""
    studies_found: int = 0
    series_retrieved: str = ""
    instances_retrieved: int = 0
    volume_dims: tuple[int, ...] = ()
    warnings: list[str] = field(default_factory=list)
    exported_series: str = ""
    sent: int = 0
    pacs_series_after: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    steps: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "pacs": self.pacs,
            "studies_found": self.studies_found,
            "series_retrieved": self.series_retrieved,
            "instances_retrieved": self.instances_retrieved,
            "volume_dims": list(self.volume_dims),
            "warnings": self.warnings,
            "exported_series": self.exported_series,
            "sent": self.sent,
            "pacs_series_after": self.pacs_series_after,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 2),
            "steps": [{"step": name, "seconds": round(s, 3)} for name, s in self.steps],
        }


def run_demo(out_dir: str | Path, *, say: Callable[[str], None] = print) -> DemoSummary:
    """Run the demo, writing its outputs into ``out_dir``; return what it did."""
    from DICOMPlusLib.bundle import save_bundle_to_study
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.export import SeriesMetadata, export_volume_to_study
    from DICOMPlusLib.loading import load_series, plan_series
    from DICOMPlusLib.loading.preview import contact_sheet, thumbnail_image
    from DICOMPlusLib.loading.writers import write_volume
    from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode, RetrieveMethod
    from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
    from DICOMPlusLib.network.pacs.sample import make_sample_data
    from DICOMPlusLib.network.query import query
    from DICOMPlusLib.network.retrieve import retrieve
    from DICOMPlusLib.network.send import send_paths

    started = time.monotonic()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(out_dir=out)
    work = Path(tempfile.mkdtemp(prefix="dicomplus-demo-"))
    clock = [time.monotonic()]

    def step(name: str) -> None:
        now = time.monotonic()
        summary.steps.append((name, now - clock[0]))
        clock[0] = now

    pacs_db = Database(work / "pacs")
    # the outputs of a previous run are replaced (the local database is kept for exploring)
    for name in ("database", "exported"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("volume.nrrd", "bundle.dcm", "contact_sheet.png", "summary.json"):
        (out / name).unlink(missing_ok=True)
    local_db = Database(out / "database")
    server = None
    try:
        contents = make_sample_data(pacs_db)
        server = QueryRetrieveSCP(pacs_db, QRConfig(ae_title="DEMOPACS", port=0, host="127.0.0.1")).start()
        node = RemoteNode(
            "demo-pacs",
            DimseEndpoint("DEMOPACS", "127.0.0.1", server.port),
            retrieve_method=RetrieveMethod.C_GET,
        )
        summary.pacs = f"DEMOPACS@127.0.0.1:{server.port}"
        held = sum(contents.values())  # a fresh PACS database: every one was added
        say(f"1. sample PACS {summary.pacs} is up with {held} sample instances")
        step("start sample PACS")

        studies = list(query(node, "study"))
        summary.studies_found = len(studies)
        ct_study = next((s for s in studies if "CT" in s.ModalitiesInStudy.split("\\")), None)
        if ct_study is None:
            raise DICOMPlusError("the sample PACS holds no CT study")
        series = list(query(node, "series", {"StudyInstanceUID": ct_study.StudyInstanceUID}))
        chosen = max(
            (s for s in series if s.Modality == "CT"), key=lambda s: s.NumberOfSeriesRelatedInstances or 0
        )
        say(
            f"2. C-FIND: {len(studies)} studies; {ct_study.PatientName} {ct_study.StudyDescription!r} has "
            f"{len(series)} series; chose {chosen.SeriesDescription!r}"
        )
        step("query")

        report = retrieve(
            node,
            local_db,
            study_uid=ct_study.StudyInstanceUID,
            series_uids=[chosen.SeriesInstanceUID],
            method="get",
        )
        if not report.complete:
            raise DICOMPlusError(f"the retrieve did not complete: {report.to_dict()}")
        summary.series_retrieved = chosen.SeriesInstanceUID
        summary.instances_retrieved = len(report.done)
        say(f"3. C-GET: {len(report.done)} instances of that series only -> {local_db.path}")
        step("retrieve (C-GET)")

        volume = load_series(local_db, chosen.SeriesInstanceUID)[0]
        nrrd = out / "volume.nrrd"
        write_volume(volume, nrrd)
        summary.volume_dims = tuple(volume.dims)
        summary.warnings = [f"{w.code}: {w.message}" for w in volume.warnings]
        summary.outputs["volume"] = str(nrrd)
        say(f"4. loaded {volume.dims} at {tuple(round(s, 3) for s in volume.spacing)} mm -> {nrrd}")
        step("load and write NRRD")

        exported = export_volume_to_study(
            local_db,
            ct_study.StudyInstanceUID,
            volume.array,
            volume.ijk_to_lps,
            SeriesMetadata(modality="CT", series_description="DICOMPlus demo export"),
            out_dir=out / "exported",
        )
        summary.exported_series = exported.series_uid
        summary.outputs["exported_series"] = str(out / "exported")
        sent = send_paths(node, [str(f) for f in exported.files])
        summary.sent = sent.sent
        after = list(query(node, "series", {"StudyInstanceUID": ct_study.StudyInstanceUID}))
        summary.pacs_series_after = len(after)
        if exported.series_uid not in {s.SeriesInstanceUID for s in after}:
            raise DICOMPlusError("the exported series did not arrive in the PACS")
        say(
            f"5. exported a new series ({len(exported.files)} files) into the study and sent it: "
            f"the PACS now lists {len(after)} series in that study"
        )
        step("export and send (C-STORE)")

        bundle_zip = io.BytesIO()
        with zipfile.ZipFile(bundle_zip, "w") as z:
            z.write(nrrd, "scene/Data/volume.nrrd")
            z.writestr(
                "scene/README.txt", "Written by dicomplus demo: a stand-in for a Slicer scene (MRB).\n"
            )
        bundle_path = out / "bundle.dcm"
        save_bundle_to_study(local_db, ct_study.StudyInstanceUID, bundle_zip.getvalue(), out_path=bundle_path)
        summary.outputs["data_bundle"] = str(bundle_path)
        say(f"6. Slicer Data Bundle saved into the study: {bundle_path}")
        step("Data Bundle")

        images = []
        for record in local_db.search("series"):
            infos = [i for i in plan_series(local_db, record.SeriesInstanceUID) if not i.localizer]
            if infos and infos[0].frames[0].pixel_offset >= 0 and record.Modality != "OT":
                images.append(thumbnail_image(infos[0]))
        sheet = out / "contact_sheet.png"
        sheet.write_bytes(contact_sheet(images))
        summary.outputs["contact_sheet"] = str(sheet)
        say(f"7. contact sheet of {len(images)} series thumbnails: {sheet}")
        summary.outputs["database"] = str(local_db.path)
        step("contact sheet")
    finally:
        if server is not None:
            server.stop()
        pacs_db.close()
        local_db.close()
        shutil.rmtree(work, ignore_errors=True)
    summary.seconds = time.monotonic() - started
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
    summary.outputs["summary"] = str(out / "summary.json")
    return summary


def cmd_demo(args) -> int:
    from DICOMPlusLib.cli.app import UsageError, print_json

    if args.db is not None or args.store is not None:
        raise UsageError(
            "demo keeps its own database in OUT/database and replaces it on each run, so it never "
            "writes into yours: leave out --db/--store (--out chooses the folder)"
        )
    say = (lambda text: None) if args.json else print
    summary = run_demo(args.out, say=say)
    if args.json:
        print_json(summary.to_dict())
        return 0
    print(f"\nDone in {summary.seconds:.1f} s. Everything it started has stopped. Look at:")
    for name, path in summary.outputs.items():
        print(f"  {name:16s} {path}")
    print(f"Explore the local database: dicomplus --db {summary.outputs['database']} search --level series")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the whole workflow on loopback against a sample PACS (a few seconds)"
    )
    from DICOMPlusLib.cli.arguments import user_path

    p.add_argument(
        "--out",
        default="dicomplus-demo",
        type=user_path,
        help="folder for the outputs, its own local database among them (OUT/database; default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    # Not offered (its database is OUT/database, replaced on each run): taken here, hidden from
    # the help, so that cmd_demo can say so instead of ignoring them.
    p.add_argument("--db", default=None, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)
