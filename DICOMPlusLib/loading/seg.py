"""DICOM Segmentations (PS3.3 A.51, C.8.20) as labelmaps: segments, voxel counts, geometry.

A SEG is a multi-frame object whose frames each hold one segment at one plane position
(PerFrameFunctionalGroupsSequence: SegmentIdentificationSequence and PlanePositionSequence), so
frames of several segments may share a position and a segment may skip positions. The frames are
placed on one regular grid: the SEG's own orientation and pixel spacing, slices along the normal
every SpacingBetweenSlices (else the smallest gap between frame positions), from the lowest
frame position to the highest. Positions without a frame are empty.

``SegmentationType`` (C.8.20.2):

* BINARY: 1 bit per pixel, frames packed without padding (a frame may start inside a byte);
* FRACTIONAL: 8 bits, ``value / MaximumFractionalValue`` is the fraction or probability; a
  voxel belongs to the segment where that is at least 0.5 (the rule the issue and highdicom's
  manifest use);
* LABELMAP (Label Map Segmentation Storage, Sup 243): pixel values are segment numbers.

The labelmap's voxel value is the segment number. Overlapping segments cannot share one voxel
of a labelmap: the higher segment number is kept and a warning says how many voxels overlap
(:func:`read_segment_masks` keeps every segment whole, for a Slicer segmentation node).

Only pydicom and numpy are used (no highdicom), so this runs in stock Slicer as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from io import BytesIO
from typing import TYPE_CHECKING

import numpy as np

from DICOMPlusLib import dataclasses_lite, uids
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import geometry as geo
from DICOMPlusLib.loading import jpegls
from DICOMPlusLib.loading.models import (
    SEGMENTATION_CLASSES,
    SEGMENTATION_EXTRA,
    Frame,
    LoadWarning,
    VolumeInfo,
)

if TYPE_CHECKING:
    import pydicom

    from DICOMPlusLib.loading.sources import InstanceSource

NATIVE = uids.NATIVE_SYNTAXES
EXTRA_KEY = SEGMENTATION_EXTRA


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG (Segment Sequence item, PS3.3 C.8.20.2) and its voxel count."""

    number: int
    label: str
    voxels: int  # voxels in the segment (FRACTIONAL: fraction >= 0.5), overlaps counted
    voxels_nonzero: int = 0  # voxels with any value above 0 (FRACTIONAL: more than voxels)
    color: tuple[int, int, int] | None = None  # RGB 0..255 from RecommendedDisplayCIELabValue
    category: tuple[str, str, str] | None = None  # (code value, scheme, meaning)
    property_type: tuple[str, str, str] | None = None
    algorithm_type: str = ""
    description: str = ""

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "label": self.label,
            "voxels": self.voxels,
            "voxels_nonzero": self.voxels_nonzero,
            "color": list(self.color) if self.color else None,
            "category": self.category[2] if self.category else None,
            "type": self.property_type[2] if self.property_type else None,
        }


@dataclass(frozen=True, eq=False)
class SegmentationLayout:
    """How the frames of one SEG map onto its labelmap; kept in ``VolumeInfo.extra``."""

    segmentation_type: str  # BINARY, FRACTIONAL or LABELMAP
    maximum_fractional: int
    segments: tuple[Segment, ...]
    frame_segment: tuple[int, ...]  # per frame: segment number (0 for LABELMAP frames)
    frame_slice: tuple[int, ...]  # per frame: k index in the labelmap
    referenced_series_uid: str = ""
    referenced_sop_uids: tuple[str, ...] = ()
    overlap_voxels: int = 0

    def inspect_fields(self) -> dict:
        """What ``inspect --json`` adds to the volume's entry."""
        return {
            "kind": "segmentation",
            "segmentation_type": self.segmentation_type,
            "segments": [s.to_dict() for s in self.segments],
            "referenced_series_uid": self.referenced_series_uid or None,
        }

    @property
    def labelmap_dtype(self) -> np.dtype:
        top = max((s.number for s in self.segments), default=0)
        return np.dtype(np.uint8 if top < 256 else np.uint16)


def is_segmentation(source: InstanceSource) -> bool:
    return source.sop_class in SEGMENTATION_CLASSES


def layout_of(info: VolumeInfo) -> SegmentationLayout | None:
    return info.extra.get(EXTRA_KEY)


# -- colours -------------------------------------------------------------------------------------
def lab_to_rgb(value) -> tuple[int, int, int] | None:
    """A DICOM CIELab triplet (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127 scaled to
    0..65535) as sRGB 0..255, D65 white point (the conversion highdicom and pixelmed use)."""
    try:
        L, a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    L, a, b = L * 100.0 / 65535.0, a * 255.0 / 65535.0 - 128.0, b * 255.0 / 65535.0 - 128.0
    fy = (L + 16.0) / 116.0
    fx, fz = a / 500.0 + fy, fy - b / 200.0

    def f_inv(t: float) -> float:
        return t**3 if t**3 > 0.008856 else (t - 16.0 / 116.0) / 7.787

    x, y, z = 0.95047 * f_inv(fx), 1.0 * f_inv(fy), 1.08883 * f_inv(fz)
    linear = (
        x * 3.2406 - y * 1.5372 - z * 0.4986,
        -x * 0.9689 + y * 1.8758 + z * 0.0415,
        x * 0.0557 - y * 0.2040 + z * 1.0570,
    )

    def gamma(c: float) -> int:
        c = 1.055 * c ** (1 / 2.4) - 0.055 if c > 0.0031308 else 12.92 * c
        return int(min(255, max(0, round(c * 255))))

    return tuple(gamma(c) for c in linear)  # type: ignore[return-value]


# -- planning ------------------------------------------------------------------------------------
def _dataset(source: InstanceSource) -> pydicom.Dataset:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(BytesIO(source.header), force=True)


def _code(item, keyword: str) -> tuple[str, str, str] | None:
    seq = item.get(keyword)
    if not seq:
        return None
    code = seq[0]
    return (
        str(code.get("CodeValue", "")),
        str(code.get("CodingSchemeDesignator", "")),
        str(code.get("CodeMeaning", "")),
    )


def _segment_number(group) -> int | None:
    """ReferencedSegmentNumber of a functional group; None when absent, empty or not a number
    (an empty one, found by fuzzing, was a TypeError)."""
    try:
        return int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _frame_segments(ds, count: int, labelmap: bool) -> list[int]:
    if labelmap:
        return [0] * count
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_number = None
    if shared and shared[0].get("SegmentIdentificationSequence"):
        shared_number = _segment_number(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    for index in range(count):
        number = shared_number
        if index < len(per_frame) and per_frame[index].get("SegmentIdentificationSequence"):
            number = _segment_number(per_frame[index])
        if number is None:
            raise LoadError(
                f"SEG frame {index + 1} has no ReferencedSegmentNumber (SegmentIdentificationSequence)"
            )
        out.append(number)
    return out


def _grid(frames: list[Frame], spacing_between: float | None) -> tuple[np.ndarray, list[int], int]:
    """(IJK->LPS, k index per frame, number of slices) of the regular grid holding every frame."""
    f0 = frames[0]
    if any(f.position is None or f.orientation is None or not f.pixel_spacing for f in frames):
        raise LoadError(
            "the SEG's frames have no plane position, orientation or pixel spacing (a SEG that only "
            "references its source images): DICOMPlus cannot place it; load it in Slicer with its source series"
        )
    orientations = list(dict.fromkeys(f.orientation for f in frames))
    if any(not geo.same_orientation(o, f0.orientation) for o in orientations):  # type: ignore[arg-type]
        raise LoadError(
            f"the SEG's frames have {len(orientations)} orientations; only single-orientation "
            "segmentations can be loaded as a labelmap"
        )
    r, c, n = geo.row_col_normal(f0.orientation)  # type: ignore[arg-type]
    positions = np.array([f.position for f in frames], float)
    dy, dx = f0.pixel_spacing  # type: ignore[misc]
    d = positions @ n
    lowest, highest = int(np.argmin(d)), int(np.argmax(d))
    origin = positions[lowest]
    gaps = np.diff(np.unique(np.round(d - d[lowest], 3)))
    candidates = [float(spacing_between)] if spacing_between and spacing_between > 0 else []
    candidates += [float(gaps.min())] if gaps.size else [float(f0.slice_thickness or 1.0)]
    for step in candidates:
        k_float = (d - d[lowest]) / step
        k = np.rint(k_float).astype(int)
        if float(np.max(np.abs(k_float - k))) * step <= max(geo.GAP_TOLERANCE_MM, 0.01 * step):
            break
    else:
        raise LoadError(
            f"the SEG's frame positions are not on a grid of {candidates[0]:g} mm slices "
            "(SpacingBetweenSlices or the smallest gap): cannot build a labelmap"
        )
    slices = int(k.max()) + 1
    matrix = np.eye(4)
    matrix[:3, 0] = r * dx
    matrix[:3, 1] = c * dy
    matrix[:3, 2] = n * step
    if slices > 1:  # follow the frames' own stack direction (sheared when the source was tilted)
        matrix[:3, 2] = (positions[highest] - origin) / k[highest]
    matrix[:3, 3] = origin
    residual = positions - (origin + k[:, None] * matrix[:3, 2])
    if float(np.abs(residual).max()) > 0.01 * min(dx, dy) + 1e-3:
        raise LoadError(
            "the SEG's frames are not on one grid (cropped or tiled frames, or a stack that bends): "
            "only full-plane frames along one straight stack can be loaded as a labelmap"
        )
    return matrix, [int(x) for x in k], slices


def plan_segmentation(source: InstanceSource) -> VolumeInfo:
    """Describe one SEG instance as a labelmap volume, counting each segment's voxels."""
    from DICOMPlusLib.loading.sources import frames_of

    ds = _dataset(source)
    kind = str(ds.get("SegmentationType") or "BINARY").upper()
    if kind not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise LoadError(f"{source.path}: SegmentationType {kind!r} is not BINARY, FRACTIONAL or LABELMAP")
    if str(ds.get("DimensionOrganizationType") or "").upper() == "TILED_FULL":
        raise LoadError(
            f"{source.path}: a tiled (slide microscopy) SEG, whose frames are tiles of one plane, is not a "
            "volume; open it with a slide viewer"
        )
    frames, frame_warnings = frames_of(source)
    if not frames or source.pixel_offset < 0:
        raise LoadError(f"{source.path}: the SEG has no frames")
    numbers = _frame_segments(ds, len(frames), kind == "LABELMAP")
    spacing_between = frames[0].spacing_between_slices
    matrix, k_index, slices = _grid(frames, spacing_between)
    described = {}
    for item in ds.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber", 0))
        described[number] = item
    if kind != "LABELMAP":
        unknown = sorted(set(numbers) - set(described))
        if unknown:
            raise LoadError(
                f"{source.path}: frames reference segments {unknown} that SegmentSequence does not describe"
            )
    order = sorted(range(len(frames)), key=lambda i: (k_index[i], numbers[i], i))
    frames = [frames[i] for i in order]
    numbers = [numbers[i] for i in order]
    k_index = [k_index[i] for i in order]
    layout = SegmentationLayout(
        segmentation_type=kind,
        maximum_fractional=int(ds.get("MaximumFractionalValue") or 255),
        segments=(),
        frame_segment=tuple(numbers),
        frame_slice=tuple(k_index),
        referenced_series_uid=_referenced_series(ds),
        referenced_sop_uids=_referenced_instances(ds),
    )
    counts, overlap = _count(frames, layout)
    # value 0 of a LABELMAP SEG is its background, not a segment, even when it is described
    numbers_seen = sorted((set(described) | set(counts)) - {0})
    segments = [_segment(n, described.get(n), *counts.get(n, (0, 0))) for n in numbers_seen]
    layout = dataclasses_lite.replace(layout, segments=tuple(segments), overlap_voxels=overlap)
    notes = list(frame_warnings)
    if overlap:
        notes.append(
            LoadWarning(
                "segments_overlap",
                f"{overlap} voxels belong to more than one segment; the labelmap keeps the highest segment "
                "number there (a segmentation node keeps every segment whole)",
                (source.path,),
            )
        )
    f0 = frames[0]
    return VolumeInfo(
        series_uid=source.series_uid,
        frames=tuple(frames),
        shape=(slices, int(f0.rows), int(f0.columns)),  # type: ignore[arg-type]
        ijk_to_lps=matrix,
        spacing=geo.column_spacing(matrix),
        warnings=tuple(notes),
        label=str(ds.get("SeriesDescription") or ds.get("ContentLabel") or "Segmentation"),
        modality="SEG",
        tilt_deg=_tilt_deg(matrix),
        extra={EXTRA_KEY: layout},
    )


def _segment(number: int, item, voxels: int, nonzero: int) -> Segment:
    """A Segment from its Segment Sequence item (PS3.3 C.8.20.2; None: not described)."""
    if item is None:
        return Segment(number, f"segment {number}", voxels, nonzero)
    return Segment(
        number=number,
        label=str(item.get("SegmentLabel", "")),
        voxels=voxels,
        voxels_nonzero=nonzero,
        color=lab_to_rgb(item.get("RecommendedDisplayCIELabValue")),
        category=_code(item, "SegmentedPropertyCategoryCodeSequence"),
        property_type=_code(item, "SegmentedPropertyTypeCodeSequence"),
        algorithm_type=str(item.get("SegmentAlgorithmType", "")),
        description=str(item.get("SegmentDescription", "")),
    )


def _tilt_deg(matrix: np.ndarray) -> float:
    """Angle between the stack direction and the slice normal (0 for an orthogonal grid)."""
    normal = np.cross(matrix[:3, 0], matrix[:3, 1])
    step = matrix[:3, 2]
    cosine = abs(float(step @ normal)) / float(np.linalg.norm(step) * np.linalg.norm(normal))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


def _referenced_series(ds) -> str:
    seq = ds.get("ReferencedSeriesSequence")
    if seq:
        return str(seq[0].get("SeriesInstanceUID", ""))
    return ""


def _referenced_instances(ds) -> tuple[str, ...]:
    out = []
    for series in ds.get("ReferencedSeriesSequence") or []:
        for item in series.get("ReferencedInstanceSequence") or []:
            uid = item.get("ReferencedSOPInstanceUID")
            if uid:
                out.append(str(uid))
    return tuple(out)


# -- pixels --------------------------------------------------------------------------------------
def _frames_pixels(frames: list[Frame]) -> Iterator[np.ndarray]:
    """Each frame's stored values (rows x columns), in the order given."""
    f0 = frames[0]
    rows, cols = int(f0.rows), int(f0.columns)  # type: ignore[arg-type]
    size = rows * cols
    if f0.transfer_syntax in NATIVE:
        try:
            with open(f0.path, "rb") as handle:
                for f in frames:
                    if f0.bits_allocated == 1:
                        start_bit = f.frame * size
                        first, skip = divmod(start_bit, 8)
                        count = (skip + size + 7) // 8
                        handle.seek(f.pixel_offset + first)
                        raw = np.frombuffer(handle.read(count), np.uint8)
                        bits = np.unpackbits(raw, bitorder="little")[skip : skip + size]
                        if bits.size != size:
                            raise LoadError(f"{f.label}: truncated pixel data")
                        yield bits.reshape(rows, cols)
                    else:
                        width = f0.bits_allocated // 8
                        handle.seek(f.pixel_offset + f.frame * size * width)
                        data = handle.read(size * width)
                        if len(data) != size * width:
                            raise LoadError(f"{f.label}: truncated pixel data")
                        order = ">" if f.transfer_syntax == uids.ExplicitVRBigEndian else "<"
                        yield np.frombuffer(data, f"{order}u{width}").reshape(rows, cols)
        except OSError as exc:
            raise LoadError(f"cannot read {f0.path}: {exc.strerror or exc}") from exc
        return
    from pydicom.pixels import iter_pixels

    if f0.transfer_syntax in jpegls.SYNTAXES:  # CharLS takes seconds to give up on a truncated scan
        jpegls.check_frames(f0.path, frames)
    try:
        for array in iter_pixels(f0.path, indices=[f.frame for f in frames], raw=True):
            yield np.asarray(array).reshape(rows, cols)
    except LoadError:
        raise
    except Exception as exc:  # decoders raise anything
        raise LoadError(
            f"cannot decode the SEG {f0.path} (transfer syntax {f0.transfer_syntax}): {exc}"
        ) from exc


def frame_values(frame: Frame) -> np.ndarray:
    """The stored values of one SEG frame (rows x columns; 0/1 for BINARY), e.g. for previews."""
    return next(_frames_pixels([frame]))


def _masks(frames, layout: SegmentationLayout) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(k, segment number, mask, nonzero) per frame: ``mask`` is membership (FRACTIONAL:
    fraction >= 0.5), ``nonzero`` any value above 0; LABELMAP frames give one pair per value."""
    threshold = layout.maximum_fractional / 2.0
    for number, k, values in zip(
        layout.frame_segment, layout.frame_slice, _frames_pixels(list(frames)), strict=True
    ):
        if layout.segmentation_type == "LABELMAP":
            for value in np.unique(values):
                if value:
                    mask = values == value
                    yield k, int(value), mask, mask
        elif layout.segmentation_type == "FRACTIONAL":
            yield k, number, values >= threshold, values > 0
        else:
            mask = values.astype(bool, copy=False)
            yield k, number, mask, mask


def _count(frames, layout: SegmentationLayout) -> tuple[dict[int, tuple[int, int]], int]:
    """(member voxels, nonzero voxels) per segment, and voxels claimed by more than one segment
    (frames sorted by k)."""
    counts: dict[int, tuple[int, int]] = {}
    overlap = 0
    current_k, union = None, None
    for k, number, mask, nonzero in _masks(frames, layout):
        members, touched = counts.get(number, (0, 0))
        counts[number] = (members + int(np.count_nonzero(mask)), touched + int(np.count_nonzero(nonzero)))
        if k != current_k:
            current_k, union = k, mask.copy()
        else:
            overlap += int(np.count_nonzero(union & mask))
            union |= mask
    return counts, overlap


def read_labelmap(info: VolumeInfo, *, progress=None, cancel=None) -> np.ndarray:
    """The labelmap ``[k, j, i]``: segment number per voxel (0: none; highest where they overlap)."""
    layout = layout_of(info)
    if layout is None:
        raise LoadError("not a segmentation")
    out = np.zeros(info.shape, layout.labelmap_dtype)
    total = len(info.frames)
    for done, (k, number, mask, _) in enumerate(_masks(info.frames, layout), 1):
        if cancel is not None and getattr(cancel, "cancelled", False):
            from DICOMPlusLib.errors import CancelledError

            raise CancelledError("Cancelled by the user while reading the segmentation.")
        plane = out[k]
        np.maximum(plane, np.where(mask, number, 0).astype(out.dtype), out=plane)
        if progress is not None and layout.segmentation_type != "LABELMAP":
            progress(done, total, info.frames[0].path)
    return out


def iter_segment_masks(info: VolumeInfo) -> Iterator[tuple[Segment, np.ndarray]]:
    """Each segment as its own boolean volume ``[k, j, i]`` (overlaps kept), one at a time, so
    a SEG of a hundred segments never holds a hundred volumes at once."""
    layout = layout_of(info)
    if layout is None:
        raise LoadError("not a segmentation")
    if layout.segmentation_type == "LABELMAP":
        labels = read_labelmap(info)
        for segment in layout.segments:
            yield segment, labels == segment.number
        return
    for segment in layout.segments:
        chosen = [i for i, n in enumerate(layout.frame_segment) if n == segment.number]
        subset = dataclasses_lite.replace(
            layout,
            frame_segment=tuple(layout.frame_segment[i] for i in chosen),
            frame_slice=tuple(layout.frame_slice[i] for i in chosen),
        )
        mask = np.zeros(info.shape, bool)
        for k, _, plane, _ in _masks([info.frames[i] for i in chosen], subset):
            mask[k] |= plane
        yield segment, mask


def read_segment_masks(info: VolumeInfo) -> dict[int, np.ndarray]:
    """Every segment as its own boolean volume ``[k, j, i]`` (overlaps kept), by segment number."""
    return {segment.number: mask for segment, mask in iter_segment_masks(info)}


def labelmap_slice(info: VolumeInfo, k: int) -> np.ndarray:
    """Slice ``k`` of the labelmap (``[j, i]``), reading only that slice's frames (previews)."""
    layout = layout_of(info)
    if layout is None:
        raise LoadError("not a segmentation")
    chosen = [i for i, kk in enumerate(layout.frame_slice) if kk == k]
    subset = dataclasses_lite.replace(
        layout,
        frame_segment=tuple(layout.frame_segment[i] for i in chosen),
        frame_slice=tuple(layout.frame_slice[i] for i in chosen),
    )
    out = np.zeros(info.shape[1:], layout.labelmap_dtype)
    if chosen:
        for _, number, mask, _ in _masks([info.frames[i] for i in chosen], subset):
            np.maximum(out, np.where(mask, number, 0).astype(out.dtype), out=out)
    return out


def segment_colours(info: VolumeInfo) -> dict[int, tuple[int, int, int]]:
    """Segment number -> RGB: the SEG's recommended colours, else a fixed palette."""
    layout = layout_of(info)
    palette = ((128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79))
    return {
        s.number: s.color or palette[index % len(palette)]
        for index, s in enumerate(layout.segments if layout else ())
    }
