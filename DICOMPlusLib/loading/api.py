"""Entry points: describe (``plan_*``) or load (``load_*``) the volumes of a series or a folder
(``load_folder`` is in :mod:`DICOMPlusLib.loading.folder`, which imports no numpy before it starts)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from DICOMPlusLib import (
    _numpy,  # noqa: F401  (numpy first, without OpenBLAS's spinning threads)
    dataclasses_lite,
)
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading.grouping import build_volumes
from DICOMPlusLib.loading.models import (
    SEGMENTATION_CLASSES,
    SEGMENTATION_EXTRA,
    Frame,
    LoadWarning,
    Volume,
    VolumeInfo,
)
from DICOMPlusLib.loading.pixels import output_components, read_pixels
from DICOMPlusLib.loading.prefetch import files_of
from DICOMPlusLib.loading.sources import (
    InstanceSource,
    SkippedFile,
    frames_of,
    sources_from_database,
    sources_from_files,
)


def plan_sources(series_uid: str, sources: Sequence[InstanceSource]) -> list[VolumeInfo]:
    """The volumes of one series from its instances' stored headers (no pixel read; a DICOM SEG
    is read whole, to count its segments' voxels)."""
    frames: list[Frame] = []
    warnings: list[LoadWarning] = []
    generated = [s.path for s in sources if s.generated_series_uid]
    if generated:
        from DICOMPlusLib.loading.unindexed import generated_series_warning

        warnings.append(generated_series_warning(series_uid, generated))
    volumes = []
    if any(s.sop_class in SEGMENTATION_CLASSES for s in sources):  # seg imports pydicom: only then
        from DICOMPlusLib.loading import seg

        volumes = [seg.plan_segmentation(s) for s in sources if seg.is_segmentation(s)]
    # Popped as they are read: each source's header bytes and scanned values are freed before
    # the next frames are made, so the plan never holds both for the whole series.
    pending = [s for s in reversed(sources) if s.sop_class not in SEGMENTATION_CLASSES]
    del sources
    if volumes and not pending:
        return volumes
    while pending:
        source = pending.pop()
        try:
            f, w = frames_of(source)
        except Exception as exc:  # a header pydicom cannot parse: report it, load the rest
            warnings.append(LoadWarning("unreadable_header", f"header cannot be read: {exc}", (source.path,)))
            continue
        frames += f
        warnings += w
    try:
        built = build_volumes(series_uid, frames, warnings)
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    return volumes + [_with_output_components(info) for info in built]


def _with_output_components(info: VolumeInfo) -> VolumeInfo:
    """PALETTE COLOR images have one stored sample but load as RGB."""
    components = output_components(info.frames[0])
    return info if components == info.components else dataclasses_lite.replace(info, components=components)


def plan_series(db, series_uid: str) -> list[VolumeInfo]:
    """The volumes of a series in the database, from the stored headers (no file is opened)."""
    return plan_sources(series_uid, sources_from_database(db, series_uid))


def plan_paths(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
) -> tuple[list[VolumeInfo], list[SkippedFile]]:
    """The volumes of every series found in files/folders, and the files that are not images
    of a series (DICOMDIR, non-DICOM...). Series are ordered by UID."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    return plan_files(files_of(paths))


def plan_files(files: Iterable[str]) -> tuple[list[VolumeInfo], list[SkippedFile]]:
    """:func:`plan_paths` for files already listed (see :func:`DICOMPlusLib.loading.prefetch.files_of`)."""
    series, skipped = sources_from_files(files)
    if not series:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        raise LoadError(f"no DICOM instances found{': ' + reasons if reasons else ''}")
    volumes: list[VolumeInfo] = []
    errors = []
    for uid in sorted(series):
        try:
            volumes += plan_sources(uid, series.pop(uid))  # each series' headers freed once planned
        except LoadError as exc:
            errors.append(str(exc))
    if not volumes:
        raise LoadError("; ".join(errors))
    return volumes, skipped


def plan_folder(path: str | os.PathLike) -> list[VolumeInfo]:
    return plan_paths(path)[0]


def load(info: VolumeInfo, *, resample: bool = False, progress=None, cancel=None, memory=None) -> Volume:
    """Read the voxels of a described volume (optionally resampled onto a regular grid).
    ``memory``: see :func:`DICOMPlusLib.loading.pixels.read_pixels`."""
    if info.extra.get(SEGMENTATION_EXTRA) is not None:  # a segmentation (see seg.layout_of)
        from DICOMPlusLib.loading import seg

        if resample and info.tilt_deg > 0.1:
            note = LoadWarning(
                "segmentation_not_resampled",
                "a segmentation is not resampled (its labels cannot be interpolated): its sheared grid is "
                "kept as it is",
                info.files,
            )
            info = dataclasses_lite.replace(info, warnings=(*info.warnings, note))
        return Volume(seg.read_labelmap(info, progress=progress, cancel=cancel), info)
    if info.mosaic:
        from DICOMPlusLib.loading.mosaic import read_tiles

        array = read_tiles(info, read_pixels, progress=progress, cancel=cancel)
    else:
        array = read_pixels(info, progress=progress, cancel=cancel, memory=memory)
    volume = Volume(array, info)
    if resample:
        from DICOMPlusLib.loading.resample import resample_regular

        volume = resample_regular(volume)
    return volume


def load_series(db, series_uid: str, *, resample: bool = False, progress=None, cancel=None) -> list[Volume]:
    """Every volume of a series in the database (see :mod:`DICOMPlusLib.loading.grouping`)."""
    return [
        load(info, resample=resample, progress=progress, cancel=cancel)
        for info in plan_series(db, series_uid)
    ]


def inspect(items: Sequence[VolumeInfo | Volume]) -> dict:
    """The ``dicomplus inspect --json`` document."""
    return {"volumes": [item.to_dict() for item in items]}


def load_many(
    db, series_uids: Sequence[str], *, resample: bool = False, progress=None, cancel=None
) -> list[tuple[str, list[Volume] | LoadError]]:
    """Load several series; each gets its volumes or the LoadError that stopped it, so one bad
    series does not keep the others from loading. ``progress(done, total, uid)`` counts series;
    ``cancel`` stops between series (what was loaded is returned by the CancelledError's caller
    only if it catches it: a cancelled load keeps nothing)."""
    out: list[tuple[str, list[Volume] | LoadError]] = []
    total = len(series_uids)
    for done, uid in enumerate(series_uids):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if progress is not None:
            progress(done, total, uid)
        try:
            out.append((uid, load_series(db, uid, resample=resample, cancel=cancel)))
        except LoadError as error:
            out.append((uid, error))
    if progress is not None:
        progress(total, total, "")
    return out
