"""Frozen records of the loading layer: warnings, slice sources, spacing reports, volumes.

Conventions (shared with ../shared/data/series/manifest.json and DESIGN.md): arrays are indexed
``[k, j, i]`` (``[t, k, j, i]`` for a time series); ``i`` runs along the row direction cosine of
ImageOrientationPatient (the image's columns), ``j`` along the column direction cosine, ``k`` over
slices by increasing position along the normal ``row x column``; the origin is the first slice's
ImagePositionPatient; matrices map ``(i, j, k, 1)`` to LPS millimetres (PS3.3 C.7.6.2.1.1) and are
exact, so sheared when the stack is tilted. Sorting along ``row x column`` makes every matrix
right-handed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from DICOMPlusLib import uids
from DICOMPlusLib.dataclasses_lite import dataclass, field

#: Segmentation Storage and Label Map Segmentation Storage (PS3.4 B.5): loaded as labelmaps by
#: :mod:`.seg`. Here, so that a load tells them apart without importing that module.
SEGMENTATION_CLASSES = frozenset({uids.SegmentationStorage, uids.LabelMapSegmentationStorage})
#: ``VolumeInfo.extra`` key of a segmentation's layout (see :func:`.seg.layout_of`).
SEGMENTATION_EXTRA = "segmentation"

#: LPS -> RAS (and back): the two first axes change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def point3(values: Iterable[float]) -> tuple[float, float, float]:
    """Three floats as a 3-tuple (a position, a direction, three spacings): ``tuple(genexpr)``
    has no length a type checker can see, and a value of any other length is a bug here."""
    x, y, z = (float(v) for v in values)
    return (x, y, z)


@dataclass(frozen=True)
class LoadWarning:
    """Something a user should know about a loaded volume. ``code`` is stable (checks and UIs
    key on it); ``message`` says what and what to do; ``files`` are the files concerned."""

    code: str
    message: str
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)  # slots: a 300-slice series holds 300 of them (0.4 MB less)
class Frame:
    """One 2D image: a single-frame instance, or one frame of a multi-frame instance.

    Attributes are the DICOM attributes that decide grouping, geometry and pixel decoding,
    already resolved through the functional groups for enhanced objects (PS3.3 C.7.6.16).
    """

    sop_uid: str
    path: str
    transfer_syntax: str
    pixel_offset: int  # offset of the Pixel Data value in the file, -1 when there is none
    pixel_length: int  # its length (-1: encapsulated, undefined length)
    frame: int = 0  # 0-based frame index inside the instance
    number_of_frames: int = 1
    series_uid: str = ""
    sop_class: str = ""
    modality: str = ""
    rows: int | None = None
    columns: int | None = None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None  # (between rows, between columns), mm
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    samples_per_pixel: int = 1
    photometric: str = "MONOCHROME2"
    planar_configuration: int = 0
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window_center: float | None = None
    window_width: float | None = None
    image_type: tuple[str, ...] = ()
    acquisition_number: int | None = None
    instance_number: int | None = None
    echo: float | None = None  # EchoNumbers, else EchoTime / EffectiveEchoTime
    temporal_position: int | None = None  # TemporalPositionIdentifier / TemporalPositionIndex
    number_of_temporal_positions: int | None = None
    trigger_time: float | None = None  # ms
    acquisition_time: float | None = None  # seconds since midnight (AcquisitionDateTime/Time)
    content_time: float | None = None
    repetition_time: float | None = None  # ms
    gantry_tilt: float | None = None  # GantryDetectorTilt, degrees
    stack_id: str = ""
    in_stack_position: int | None = None
    frame_of_reference: str = ""
    #: Diffusion encoding (see :mod:`DICOMPlusLib.loading.diffusion`): b-value in s/mm2 and the
    #: gradient as a unit vector in LPS (None when the image is not directional, e.g. b=0 or trace).
    diffusion_b: float | None = None
    diffusion_gradient: tuple[float, float, float] | None = None
    #: One tile of a mosaic image (see :mod:`DICOMPlusLib.loading.mosaic`): (rows, columns of the
    #: stored image, tile index in row-major order); ``rows``/``columns`` are the tile's.
    mosaic: tuple[int, int, int] | None = None
    #: DimensionIndexValues (0020,9157) of an enhanced frame (PS3.3 C.7.6.17.1)
    dimension_index: tuple[int, ...] | None = None

    @property
    def has_geometry(self) -> bool:
        return self.position is not None and self.orientation is not None

    @property
    def label(self) -> str:
        return f"{self.path}#{self.frame + 1}" if self.number_of_frames > 1 else self.path


@dataclass(frozen=True)
class MissingSlices:
    """``count`` slices seem to be missing between slice ``after`` and ``after + 1``."""

    after: int
    count: int
    position_mm: float  # where the gap starts, along the normal from the first slice

    def to_dict(self) -> dict:
        return {"after": self.after, "count": self.count, "position_mm": self.position_mm}


@dataclass(frozen=True)
class SpacingReport:
    """All gaps between consecutive slices along the normal.

    ``kind``: ``single`` (one slice), ``regular``, ``missing`` (every gap is the nominal gap or a
    whole multiple of it), ``irregular`` (other gaps), ``duplicates`` (slices at one position).
    """

    kind: str
    distances: tuple[float, ...]  # slice positions along the normal, from the first slice, mm
    nominal: float | None  # the usual gap, mm
    minimum: float | None
    maximum: float | None
    histogram: tuple[tuple[float, int], ...] = ()  # (gap rounded to 0.001 mm, count)
    missing: tuple[MissingSlices, ...] = ()
    duplicates: tuple[tuple[int, int], ...] = ()  # pairs of slice indices at one position

    @property
    def regular(self) -> bool:
        return self.kind in ("regular", "single")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "nominal": self.nominal,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "histogram": [list(h) for h in self.histogram],
            "missing": [m.to_dict() for m in self.missing],
            "duplicates": [list(d) for d in self.duplicates],
        }


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """Where a volume's voxels are: a validated 4x4 IJK->LPS affine and the grid size (highdicom's
    ``Volume`` habit), the value that crosses the library's boundaries instead of a bare ndarray.

    Column ``n`` of the affine is the step of index ``n`` (i along the row direction, j along the
    column direction, k over slices), so its length is the spacing along that axis; the last column
    is the LPS position of voxel (0, 0, 0), the first slice's ImagePositionPatient (PS3.3
    C.7.6.2.1.1). The matrix may be sheared (a gantry tilt) but never singular. ``np.asarray``
    gives the matrix, so functions that take an IJK->LPS matrix (export) take a geometry too.
    """

    ijk_to_lps: np.ndarray
    dims: tuple[int, int, int]  # (i, j, k)

    def __post_init__(self) -> None:
        m = np.array(self.ijk_to_lps, dtype=float)  # a private copy: the value cannot change
        if m.shape != (4, 4):
            raise ValueError(f"an IJK->LPS matrix is 4x4, got shape {m.shape}")
        if not np.all(np.isfinite(m)) or not np.array_equal(m[3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError(f"not an affine IJK->LPS matrix (finite, last row 0 0 0 1): {m.tolist()}")
        if abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise ValueError("the IJK->LPS matrix is singular: its axes do not span space")
        dims = tuple(int(d) for d in self.dims)
        if len(dims) != 3 or min(dims) < 1:
            raise ValueError(f"dims are three positive sizes (i, j, k), got {self.dims}")
        m.flags.writeable = False
        object.__setattr__(self, "ijk_to_lps", m)
        object.__setattr__(self, "dims", dims)

    def __array__(self, dtype=None, copy=None):
        return np.array(self.ijk_to_lps, dtype=dtype)

    def __eq__(self, other) -> bool:
        if not isinstance(other, VolumeGeometry):
            return NotImplemented
        return self.dims == other.dims and np.array_equal(self.ijk_to_lps, other.ijk_to_lps)

    # mutable-looking contents: compare, do not hash (typeshed types object.__hash__ as a method;
    # None is how Python spells "unhashable", the ignore mypy's docs give for it)
    __hash__ = None  # type: ignore[assignment]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Lengths of the three axis columns, mm."""
        return point3(np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0))

    @property
    def origin(self) -> np.ndarray:
        """LPS position of voxel (0, 0, 0), mm."""
        return self.ijk_to_lps[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3, the unit direction of i, j and k in its columns (LPS)."""
        axes = self.ijk_to_lps[:3, :3]
        return axes / np.linalg.norm(axes, axis=0)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.ijk_to_lps

    def ijk_to_lps_points(self, ijk) -> np.ndarray:
        """LPS positions (n, 3) of voxel indices (n, 3) (or one (3,) index)."""
        points = np.asarray(ijk, dtype=float)
        return points @ self.ijk_to_lps[:3, :3].T + self.ijk_to_lps[:3, 3]

    def lps_to_ijk_points(self, lps) -> np.ndarray:
        """Continuous voxel indices of LPS positions: the inverse of ``ijk_to_lps_points``."""
        points = np.asarray(lps, dtype=float) - self.ijk_to_lps[:3, 3]
        return np.linalg.solve(self.ijk_to_lps[:3, :3], points.T).T

    def to_dict(self) -> dict:
        return {
            "dims": list(self.dims),
            "spacing": list(self.spacing),
            "ijk_to_lps": _matrix(self.ijk_to_lps),
        }


@dataclass(frozen=True, eq=False)
class VolumeInfo:
    """Everything about a volume but its voxels: what ``inspect`` prints and ``load`` reads.

    ``frames`` are in array order: ``t`` major, then ``k``.
    """

    series_uid: str
    frames: tuple[Frame, ...]
    shape: tuple[int, ...]  # (k, j, i) or (t, k, j, i)
    ijk_to_lps: np.ndarray
    spacing: tuple[float, float, float]  # lengths of the three columns of ijk_to_lps, mm
    warnings: tuple[LoadWarning, ...] = ()
    slice_positions: np.ndarray | None = None  # (k, 3) ImagePositionPatient of each slice, LPS
    spacing_report: SpacingReport | None = None
    tilt_deg: float = 0.0  # angle between the stack direction and the slice normal
    time_axis: tuple[float, ...] | None = None
    time_unit: str = ""
    time_source: str = ""
    localizer: bool = False
    label: str = ""
    modality: str = ""
    window: tuple[float, float] | None = None  # (center, width) of the middle slice
    components: int = 1  # samples per voxel (3 for RGB: the array gets a last axis)
    extra: dict = field(default_factory=dict)
    #: Diffusion-weighted series: one b-value (s/mm2) and one LPS unit gradient per volume (t),
    #: zeros where the volume has no direction (b <= 5 or not directional).
    bvals: tuple[float, ...] | None = None
    gradients_lps: tuple[tuple[float, float, float], ...] | None = None
    mosaic: bool = False

    @property
    def dims(self) -> tuple[int, ...]:
        """(i, j, k) or (i, j, k, t): the order of the CLI and the manifest."""
        if len(self.shape) == 4:
            t, k, j, i = self.shape
            return (i, j, k, t)
        k, j, i = self.shape[:3]
        return (i, j, k)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.ijk_to_lps

    @property
    def geometry(self) -> VolumeGeometry:
        """The voxel grid of one time point as a value object."""
        i, j, k = self.dims[:3]
        return VolumeGeometry(self.ijk_to_lps, (i, j, k))

    @property
    def sop_uids(self) -> tuple[str, ...]:
        return tuple(f.sop_uid for f in self.frames)

    @property
    def is_4d(self) -> bool:
        return len(self.shape) == 4

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.path for f in self.frames))

    @property
    def is_diffusion(self) -> bool:
        return self.bvals is not None

    def to_dict(self) -> dict:
        """The ``inspect --json`` shape of one volume (plus what ``extra`` records add through
        their ``inspect_fields()``, e.g. a segmentation's segments)."""
        out: dict[str, object] = {
            "series_uid": self.series_uid,
            "dims": list(self.dims),
            "spacing": [float(s) for s in self.spacing],
            "ijk_to_ras": _matrix(self.ijk_to_ras),
            "ijk_to_lps": _matrix(self.ijk_to_lps),
            "warnings": [w.to_dict() for w in self.warnings],
        }
        if self.mosaic:
            out["mosaic"] = True
        if self.bvals is not None and self.gradients_lps is not None:
            out["bvals"] = [float(round(b, 6)) for b in self.bvals]
            out["gradients_lps"] = [[float(round(x, 6)) + 0.0 for x in g] for g in self.gradients_lps]
        for value in self.extra.values():
            if hasattr(value, "inspect_fields"):
                out.update(value.inspect_fields())
        return out


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels plus their geometry. ``array`` is ``[k, j, i]`` (``[t, k, j, i]`` for a time
    series), int16 when the rescaled values are exactly int16, float32 otherwise."""

    array: np.ndarray
    info: VolumeInfo

    # The geometry, forwarded so that ``volume.ijk_to_lps`` etc. read naturally.
    @property
    def ijk_to_lps(self) -> np.ndarray:
        return self.info.ijk_to_lps

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return self.info.ijk_to_ras

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.info.spacing

    @property
    def geometry(self) -> VolumeGeometry:
        return self.info.geometry

    @property
    def warnings(self) -> tuple[LoadWarning, ...]:
        return self.info.warnings

    @property
    def series_uid(self) -> str:
        return self.info.series_uid

    @property
    def sop_uids(self) -> tuple[str, ...]:
        return self.info.sop_uids

    @property
    def time_axis(self) -> tuple[float, ...] | None:
        return self.info.time_axis

    @property
    def dims(self) -> tuple[int, ...]:
        return self.info.dims

    @property
    def localizer(self) -> bool:
        return self.info.localizer

    def time_points(self) -> list[Volume]:
        """One 3D volume per time point (views, no copies); ``[self]`` for a 3D volume."""
        if len(self.info.shape) != 4:
            return [self]
        t, k = self.info.shape[0], self.info.shape[1]
        out = []
        for index in range(t):
            info = VolumeInfo(
                series_uid=self.info.series_uid,
                frames=self.info.frames[index * k : (index + 1) * k],
                shape=self.info.shape[1:],
                ijk_to_lps=self.info.ijk_to_lps,
                spacing=self.info.spacing,
                warnings=self.info.warnings,
                slice_positions=self.info.slice_positions,
                spacing_report=self.info.spacing_report,
                tilt_deg=self.info.tilt_deg,
                time_axis=(self.info.time_axis[index],) if self.info.time_axis else None,
                time_unit=self.info.time_unit,
                time_source=self.info.time_source,
                localizer=self.info.localizer,
                label=f"{self.info.label} t={index}".strip(),
                modality=self.info.modality,
                window=self.info.window,
                components=self.info.components,
            )
            out.append(Volume(self.array[index], info))
        return out

    def to_dict(self) -> dict:
        return self.info.to_dict()


def _matrix(m: np.ndarray) -> list[list[float]]:
    return [[float(round(x, 6)) + 0.0 for x in row] for row in np.asarray(m, float)]
