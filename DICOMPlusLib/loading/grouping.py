"""Split a series' frames into loadable volumes, and describe each one (no pixels read).

A series (one SeriesInstanceUID) is not always one volume. In this order:

1. Objects without pixel data (SR, PR, KO...) and empty pixel data are set aside, with warnings.
2. Frames without ImagePositionPatient / ImageOrientationPatient / PixelSpacing cannot be placed:
   they load apart, as plain stacks without geometry (e.g. secondary captures in a CT series),
   and the placed volumes say so.
3. Frames are split by size and pixel format, by orientation (like Slicer's sub-series and
   dcm2niix's "orientation varies") and by pixel spacing; localizers are separated and flagged.
4. Where positions repeat, the volumes of a 4D series are formed by the acquisition's own
   identity: the diffusion encoding (b-value + gradient), TemporalPositionIdentifier/Index and
   TriggerTime, whichever are present and give one frame per position per volume (volumes
   ordered by time, then by their smallest InstanceNumber). Otherwise frames that differ by
   ImageType or echo are split; acquisitions covering different positions are split; the same
   positions repeated in time make one 4D volume, the n-th frame of each position (by time, then
   InstanceNumber, then AcquisitionNumber) in the n-th volume. Every diffusion volume is then
   checked to hold one b-value and gradient.
5. Each volume's geometry comes from :mod:`DICOMPlusLib.loading.geometry`; everything unusual
   becomes a :class:`LoadWarning`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from DICOMPlusLib.loading import diffusion
from DICOMPlusLib.loading import geometry as geo
from DICOMPlusLib.loading.identity import frame_order, time_order, volumes_by_identity
from DICOMPlusLib.loading.models import Frame, LoadWarning, VolumeInfo

LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT", "SURVEY"})


def _files(frames: Sequence[Frame]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.label for f in frames))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Group:
    """Frames that can share one grid, plus why they were split off."""

    def __init__(self, frames: list[Frame], warnings: list[LoadWarning] | None = None, label: str = ""):
        self.frames = frames
        self.warnings = list(warnings or [])
        self.label = label
        self.localizer = False


def _split(
    frames: list[Frame], key: Callable[[Frame], object], same: Callable | None = None
) -> list[list[Frame]]:
    groups: list[tuple[object, list[Frame]]] = []
    for f in frames:
        k = key(f)
        for gk, members in groups:
            if same(gk, k) if same else gk == k:
                members.append(f)
                break
        else:
            groups.append((k, [f]))
    return [members for _, members in groups]


def build_volumes(
    series_uid: str, frames: Sequence[Frame], warnings: Sequence[LoadWarning] = ()
) -> list[VolumeInfo]:
    """Every loadable volume of a series. Raises ValueError when nothing can be loaded (the
    caller turns it into a LoadError with the reasons)."""
    frames = sorted(frames, key=frame_order)
    common = list(warnings)
    no_pixels: list[Frame] = []
    empty: list[Frame] = []
    images: list[Frame] = []
    for f in frames:
        if f.pixel_offset < 0 or not f.rows or not f.columns:
            no_pixels.append(f)
        elif f.pixel_length == 0:
            empty.append(f)
        else:
            images.append(f)
    if no_pixels:
        classes = sorted({f.sop_class or "?" for f in no_pixels})
        common.append(
            LoadWarning(
                "non_image",
                f"{_plural(len(no_pixels), 'object')} without pixel data in the series (SOP class "
                f"{', '.join(classes)}) left out",
                _files(no_pixels),
            )
        )
    if empty:
        common.append(
            LoadWarning(
                "empty_pixel_data",
                f"{_plural(len(empty), 'image')} with empty pixel data left out",
                _files(empty),
            )
        )
    placed = [f for f in images if f.has_geometry and f.pixel_spacing]
    unplaced = [f for f in images if not (f.has_geometry and f.pixel_spacing)]
    if not images:
        reasons = "; ".join(w.message for w in common) or "no images"
        raise ValueError(f"series {series_uid} has nothing to load as a volume: {reasons}")
    if not placed:
        return [_stack_without_geometry(series_uid, g, common) for g in _split(unplaced, _size_key)]
    if unplaced:
        missing = sorted(
            {
                name
                for f in unplaced
                for name, ok in (
                    ("ImagePositionPatient", f.position is not None),
                    ("ImageOrientationPatient", f.orientation is not None),
                    ("PixelSpacing", f.pixel_spacing is not None),
                )
                if not ok
            }
        )
        apart = [_stack_without_geometry(series_uid, g, common) for g in _split(unplaced, _size_key)]
        common.append(
            LoadWarning(
                "missing_geometry",
                f"{_plural(len(unplaced), 'image')} without {' / '.join(missing)} cannot be placed beside the "
                f"others: loaded apart, as {_plural(len(apart), 'volume')} without geometry",
                _files(unplaced),
            )
        )
    groups = _geometric_groups(placed)
    volumes: list[VolumeInfo] = []
    for group in groups:
        for stack in _stacks(group):
            volumes.append(_describe(series_uid, stack, common))
    volumes.sort(key=lambda v: (v.localizer, frame_order(min(v.frames, key=frame_order))))
    return volumes + (apart if unplaced else [])


def _size_key(f: Frame) -> tuple:
    return (f.rows, f.columns, f.samples_per_pixel, f.bits_allocated)


def _geometric_groups(frames: list[Frame]) -> list[_Group]:
    by_size = _split(frames, _size_key)
    groups: list[_Group] = []
    for members in by_size:
        warn = []
        if len(by_size) > 1:
            sizes = ", ".join(f"{g[0].columns}x{g[0].rows}: {_plural(len(g), 'image')}" for g in by_size)
            warn.append(
                LoadWarning(
                    "mixed_sizes",
                    f"the series holds images of {len(by_size)} sizes or pixel formats ({sizes}); "
                    "each loads as its own volume",
                    _files(members),
                )
            )
        localizers = [f for f in members if LOCALIZER_TYPES & set(f.image_type)]
        rest = [f for f in members if not LOCALIZER_TYPES & set(f.image_type)]
        for part, is_localizer in ((rest, False), (localizers, True)):
            if not part:
                continue
            by_orientation = _split(part, lambda f: f.orientation, geo.same_orientation)
            for members2 in by_orientation:
                w = list(warn)
                if len(by_orientation) > 1:
                    w.append(
                        LoadWarning(
                            "mixed_orientation",
                            f"the series holds {len(by_orientation)} slice orientations; each loads as its "
                            f"own volume (this one: {_plural(len(members2), 'image')}, orientation "
                            f"{_fmt(members2[0].orientation)})",
                            _files(members2),
                        )
                    )
                by_spacing = _split(
                    members2,
                    lambda f: f.pixel_spacing,
                    lambda a, b: max(abs(x - y) for x, y in zip(a, b, strict=False)) <= 1e-4,
                )
                for members3 in by_spacing:
                    w3 = list(w)
                    if len(by_spacing) > 1:
                        w3.append(
                            LoadWarning(
                                "mixed_pixel_spacing",
                                f"images of one orientation have {len(by_spacing)} pixel spacings; each loads "
                                "as its own volume",
                                _files(members3),
                            )
                        )
                    g = _Group(members3, w3)
                    g.localizer = is_localizer
                    groups.append(g)
    _flag_probable_localizers(groups)
    return groups


def _flag_probable_localizers(groups: list[_Group]) -> None:
    """Few images in another orientation than a much larger group (or a three-plane set of
    tiny groups) are a localizer even when ImageType does not say so (Slicer's heuristic)."""
    plain = [g for g in groups if not g.localizer]
    if len(plain) < 2:
        for g in groups:
            if g.localizer:
                g.warnings.append(_localizer_warning(g, "ImageType says LOCALIZER"))
        return
    largest = max(len(g.frames) for g in plain)
    three_plane = len(plain) >= 3 and all(len(g.frames) <= 3 for g in plain)
    for g in groups:
        if g.localizer:
            g.warnings.append(_localizer_warning(g, "ImageType says LOCALIZER"))
        elif three_plane or (len(g.frames) <= 3 and largest >= 4 * len(g.frames)):
            g.localizer = True
            g.warnings.append(_localizer_warning(g, "few images in another orientation than the main stack"))


def _localizer_warning(g: _Group, why: str) -> LoadWarning:
    return LoadWarning(
        "localizer",
        f"probable localizer ({why}): {_plural(len(g.frames), 'image')} loaded apart from the main volume",
        _files(g.frames),
    )


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# -- repeated positions: split or 4D ---------------------------------------------------------------
def _position_clusters(frames: list[Frame], normal: np.ndarray) -> list[list[Frame]]:
    d = [float(np.asarray(f.position) @ normal) for f in frames]
    order = sorted(range(len(frames)), key=lambda i: (d[i], time_order(frames[i])))
    clusters: list[list[Frame]] = []
    last = None
    for i in order:
        if last is not None and d[i] - last < geo.POSITION_TOLERANCE_MM:
            clusters[-1].append(frames[i])
        else:
            clusters.append([frames[i]])
            last = d[i]
    return clusters


class _Stack:
    """One volume to be: its time points (each a list of frames, one per position)."""

    def __init__(
        self, time_points: list[list[Frame]], warnings: list[LoadWarning], localizer: bool, label: str
    ):
        self.time_points = time_points
        self.warnings = warnings
        self.localizer = localizer
        self.label = label


def _stacks(group: _Group) -> list[_Stack]:
    _, _, normal = geo.row_col_normal(group.frames[0].orientation)  # type: ignore[arg-type]
    return _resolve(group.frames, normal, group.warnings, group.localizer, group.label, depth=0)


def _resolve(frames, normal, warnings, localizer, label, depth) -> list[_Stack]:
    clusters = _position_clusters(frames, normal)
    if all(len(c) == 1 for c in clusters):
        return [_Stack([[c[0] for c in clusters]], list(warnings), localizer, label)]
    by_identity = volumes_by_identity(frames, clusters)
    if by_identity is not None:
        return [_complete_volumes(by_identity, len(clusters), warnings, localizer, label)]
    for name, key in (("ImageType", lambda f: f.image_type), ("echo", lambda f: f.echo)):
        parts = _split(frames, key)
        if len(parts) > 1:
            out = []
            for part in parts:
                echo = part[0].echo  # None: the images that give no echo beside some that do
                what = (
                    "\\".join(part[0].image_type)
                    if name == "ImageType"
                    else f"{echo:g}"
                    if echo is not None
                    else "none"
                )
                w = [
                    *list(warnings),
                    LoadWarning(
                        f"split_{name.lower()}",
                        f"images at the same positions differ by {name}: loaded one volume per value "
                        f"(this one: {name} {what})",
                        _files(part),
                    ),
                ]
                out += _resolve(part, normal, w, localizer, f"{label} {name} {what}".strip(), depth + 1)
            return out
    acquisitions = _split(frames, lambda f: f.acquisition_number)
    if len(acquisitions) > 1:
        sets = [_position_signature(p, normal) for p in acquisitions]
        unique = all(all(len(c) == 1 for c in _position_clusters(p, normal)) for p in acquisitions)
        if unique and len(set(sets)) == len(sets):
            out = []
            for part in acquisitions:
                w = [
                    *list(warnings),
                    LoadWarning(
                        "split_acquisitions",
                        f"acquisitions cover different positions: loaded one volume per AcquisitionNumber "
                        f"(this one: {part[0].acquisition_number})",
                        _files(part),
                    ),
                ]
                out += _resolve(
                    part,
                    normal,
                    w,
                    localizer,
                    f"{label} acquisition {part[0].acquisition_number}".strip(),
                    depth + 1,
                )
            return out
    return [_time_series(clusters, warnings, localizer, label)]


def _complete_volumes(volumes: list[list[Frame]], positions: int, warnings, localizer, label) -> _Stack:
    warnings = list(warnings)
    complete = [v for v in volumes if len(v) == positions]
    if len(complete) < len(volumes):
        dropped = [f for v in volumes if len(v) != positions for f in v]
        warnings.append(
            LoadWarning(
                "incomplete_time_points",
                f"{len(volumes) - len(complete)} of {len(volumes)} volumes do not cover all {positions} slice "
                f"positions and were left out ({_plural(len(dropped), 'image')})",
                _files(dropped),
            )
        )
    return _Stack([sorted(v, key=time_order) for v in complete], warnings, localizer, label)


def _position_signature(frames: list[Frame], normal: np.ndarray) -> tuple:
    return tuple(sorted(round(float(np.asarray(f.position) @ normal), 2) for f in frames))


def _time_series(clusters: list[list[Frame]], warnings, localizer, label) -> _Stack:
    counts = [len(c) for c in clusters]
    for c in clusters:
        c.sort(key=time_order)
    warnings = list(warnings)
    most = max(counts)
    ones = sum(1 for n in counts if n == 1)
    if ones > len(counts) / 2:  # mostly single: the repeats are duplicates, not time
        dropped = [f for c in clusters for f in c[1:]]
        warnings.append(
            LoadWarning(
                "duplicate_positions",
                f"{_plural(len(dropped), 'image')} repeat a position already filled (same position, no "
                "time or type difference); the first of each position (by time, then InstanceNumber) "
                "was kept",
                _files(dropped),
            )
        )
        return _Stack([[c[0] for c in clusters]], warnings, localizer, label)
    complete = [t for t in range(most) if all(len(c) > t for c in clusters)]
    if len(complete) < most:
        dropped = [f for c in clusters for t, f in enumerate(c) if t not in complete]
        warnings.append(
            LoadWarning(
                "incomplete_time_points",
                f"positions repeat {min(counts)} to {most} times; only the {len(complete)} complete time points "
                f"were loaded ({_plural(len(dropped), 'image')} left out)",
                _files(dropped),
            )
        )
    points = [[c[t] for c in clusters] for t in complete]
    return _Stack(points, warnings, localizer, label)


# -- one volume's description -------------------------------------------------------------------
def _describe(series_uid: str, stack: _Stack, common: list[LoadWarning]) -> VolumeInfo:
    first = stack.time_points[0]
    f0 = first[0]
    n = geo.row_col_normal(f0.orientation)[2]  # type: ignore[arg-type]
    points = []
    for tp in stack.time_points:
        positions = np.array([f.position for f in tp], float)
        o, _ = geo.sort_along_normal(positions, n)
        points.append([tp[i] for i in o])
    sorted_first = points[0]
    positions = np.array([f.position for f in sorted_first], float)
    single = f0.spacing_between_slices or f0.slice_thickness or 1.0
    matrix = geo.ijk_to_lps(f0.orientation, f0.pixel_spacing, positions, single)  # type: ignore[arg-type]
    report = geo.spacing_report(geo.distances_along(positions, n))
    tilt = geo.tilt_deg(positions, n)
    warnings = list(common) + list(stack.warnings)
    warnings += _geometry_warnings(sorted_first, report, tilt, matrix)
    encoding = diffusion.volume_encoding(points)
    if encoding is not None and max(encoding[0]) <= diffusion.B0_THRESHOLD:
        encoding = None  # b=0 everywhere: an ordinary image that happens to carry the tag
    if encoding is not None:
        warnings += diffusion.homogeneity_warnings(points)
        warnings += diffusion.direction_warnings(*encoding)
    time_axis = time_unit = time_source = None
    if len(points) > 1 and encoding is not None:
        time_axis, time_unit, time_source = tuple(float(t) for t in range(len(points))), "index", "diffusion"
    elif len(points) > 1:
        time_axis, time_unit, time_source, w = _time_axis(points)
        warnings += w
    mid = sorted_first[len(sorted_first) // 2]
    window = (
        (mid.window_center, mid.window_width) if mid.window_center is not None and mid.window_width else None
    )
    frames = tuple(f for tp in points for f in tp)
    k = len(sorted_first)
    shape = (len(points), k, f0.rows, f0.columns) if len(points) > 1 else (k, f0.rows, f0.columns)
    assert geo.is_right_handed(matrix), "slices sorted along row x column give a right-handed grid"
    return VolumeInfo(
        series_uid=series_uid,
        frames=frames,
        shape=shape,  # type: ignore[arg-type]
        ijk_to_lps=matrix,
        spacing=geo.column_spacing(matrix),
        warnings=tuple(_dedupe(warnings)),
        slice_positions=positions,
        spacing_report=report,
        tilt_deg=tilt,
        time_axis=time_axis,
        time_unit=time_unit or "",
        time_source=time_source or "",
        localizer=stack.localizer,
        label=stack.label,
        modality=f0.modality,
        window=window,
        components=f0.samples_per_pixel,
        bvals=encoding[0] if encoding else None,
        gradients_lps=encoding[1] if encoding else None,
        mosaic=any(f.mosaic is not None for f in frames),
    )


def _dedupe(warnings: list[LoadWarning]) -> list[LoadWarning]:
    seen = set()
    out = []
    for w in warnings:
        if (w.code, w.message) not in seen:
            seen.add((w.code, w.message))
            out.append(w)
    return out


def _geometry_warnings(frames: list[Frame], report, tilt: float, matrix: np.ndarray) -> list[LoadWarning]:
    out = []
    files = _files(frames)
    if report.missing:
        where = "; ".join(
            f"{_plural(m.count, 'slice')} between slice {m.after} (at {m.position_mm:g} mm) and slice {m.after + 1}"
            for m in report.missing
        )
        out.append(
            LoadWarning(
                "missing_slices",
                f"slices seem to be missing: {where}; the usual gap is {report.nominal:g} mm",
                files,
            )
        )
    if report.kind in ("missing", "irregular"):
        hist = ", ".join(f"{gap:g} mm x{count}" for gap, count in report.histogram)
        out.append(
            LoadWarning(
                "irregular_spacing",
                f"slice gaps along the normal are not all equal ({hist}); the matrix uses the mean step "
                f"{float(np.linalg.norm(matrix[:3, 2])):.4g} mm, so voxels between the first and last "
                "slice are misplaced: resample (convert --resample) for a regular grid",
                files,
            )
        )
    if report.kind == "duplicates":
        out.append(LoadWarning("duplicate_positions", "several slices share one position", files))
    tags = {f.gantry_tilt for f in frames if f.gantry_tilt is not None}
    tag = next(iter(tags)) if len(tags) == 1 else None
    if tilt > geo.TILT_TOLERANCE_DEG:
        said = (
            f"GantryDetectorTilt says {tag:g} deg"
            if tag not in (None, 0.0)
            else "no GantryDetectorTilt"
            if tag is None
            else "GantryDetectorTilt says 0"
        )
        out.append(
            LoadWarning(
                "gantry_tilt",
                f"the stack runs {tilt:.2f} deg off the slice normal ({said}): the IJK->LPS matrix is sheared; "
                "tools that need orthogonal axes (ITK, NIfTI qform) need a resampled volume (convert --resample)",
                files,
            )
        )
    elif tag is not None and abs(tag) > geo.TILT_TOLERANCE_DEG and len(frames) > 1:
        out.append(
            LoadWarning(
                "gantry_tilt_tag_ignored",
                f"GantryDetectorTilt says {tag:g} deg but the slice positions are stacked along the normal "
                "(already corrected by the scanner): no shear applied",
                files,
            )
        )
    # every frame of a volume is placed (see `group`): the filter only tells the type checker
    orientations = [f.orientation for f in frames if f.orientation is not None]
    spread = geo.orientation_spread_deg(list(dict.fromkeys(orientations)))
    if spread > 0.001:
        out.append(
            LoadWarning(
                "orientation_varies",
                f"slice orientations differ by up to {spread:.3f} deg; the first slice's orientation is used",
                files,
            )
        )
    if geo.orthogonality_error(orientations[0]) > 1e-3:
        out.append(
            LoadWarning(
                "orientation_not_orthogonal",
                f"ImageOrientationPatient {_fmt(orientations[0])} is not two orthogonal unit vectors",
                files,
            )
        )
    return out


def _time_axis(points: list[list[Frame]]) -> tuple[tuple[float, ...], str, str, list[LoadWarning]]:
    heads = [tp[0] for tp in points]
    T = len(points)

    def varying(values):
        return all(v is not None for v in values) and len(set(values)) == len(values)

    for attr, unit, name in (
        ("trigger_time", "ms", "TriggerTime"),
        ("acquisition_time", "s", "AcquisitionTime"),
        ("content_time", "s", "ContentTime"),
    ):
        values = [getattr(f, attr) for f in heads]
        if varying(values):
            base = values[0] if unit == "s" else 0.0
            return tuple(float(round(v - base, 6)) for v in values), unit, name, []
    values = [f.temporal_position for f in heads]
    if varying(values):
        return tuple(float(v) for v in values), "index", "TemporalPositionIdentifier", []
    tr = heads[0].repetition_time
    if tr and heads[0].number_of_temporal_positions == T and heads[0].modality == "MR":
        warning = LoadWarning(
            "time_axis_assumed",
            f"no per-volume time in the headers: time points assumed one RepetitionTime ({tr:g} ms) apart, "
            "in InstanceNumber order",
        )
        return tuple(float(round(t * tr / 1000.0, 6)) for t in range(T)), "s", "RepetitionTime", [warning]
    warning = LoadWarning(
        "time_axis_index",
        "no per-volume time in the headers: time points ordered by InstanceNumber, time axis is the index",
    )
    return tuple(float(t) for t in range(T)), "index", "InstanceNumber", [warning]


def _stack_without_geometry(series_uid: str, frames: list[Frame], common: list[LoadWarning]) -> VolumeInfo:
    """No image can be placed in space: a plain stack in InstanceNumber order, identity axes."""
    f0 = frames[0]
    dy, dx = f0.pixel_spacing or (1.0, 1.0)
    dz = f0.spacing_between_slices or f0.slice_thickness or 1.0
    matrix = np.diag([dx, dy, dz, 1.0])
    warnings = [
        *list(common),
        LoadWarning(
            "no_geometry",
            "no image has ImagePositionPatient and ImageOrientationPatient: loaded as a stack in InstanceNumber "
            "order with identity axes at the origin; its position in the patient is unknown",
            _files(frames),
        ),
    ]
    return VolumeInfo(
        series_uid=series_uid,
        frames=tuple(frames),
        shape=(len(frames), f0.rows, f0.columns),  # type: ignore[arg-type]
        ijk_to_lps=matrix,
        spacing=(float(dx), float(dy), float(dz)),
        warnings=tuple(_dedupe(warnings)),
        modality=f0.modality,
        components=f0.samples_per_pixel,
        window=(f0.window_center, f0.window_width)
        if f0.window_center is not None and f0.window_width
        else None,
    )
