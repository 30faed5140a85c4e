"""Which volume of a 4D series a frame belongs to, and in which order frames and volumes come.

Volumes are named by the acquisition itself (PS3.3 C.8.13.5.9 MR Diffusion, C.7.6.16.2.2 Frame
Content: TemporalPositionIndex; C.7.6.18 Cardiac Synchronization: trigger delay), never by
AcquisitionNumber, which some vendors do not tie to the volume (Philips DWI), and InstanceNumber
only breaks ties.
"""

from __future__ import annotations

import itertools

from DICOMPlusLib.loading import diffusion
from DICOMPlusLib.loading.models import Frame


def frame_order(f: Frame) -> tuple:
    """A deterministic order independent of where the frames came from."""
    return (f.instance_number is None, f.instance_number or 0, f.sop_uid, f.frame)


def _key(x) -> tuple:
    return (x is None, x if x is not None else 0)


def time_order(f: Frame) -> tuple:
    """When a frame was acquired; InstanceNumber (then AcquisitionNumber) only breaks ties:
    AcquisitionNumber does not follow the volumes in every vendor's series (Philips DWI)."""
    return (
        _key(f.temporal_position),
        _key(f.trigger_time),
        _key(f.acquisition_time),
        _key(f.content_time),
        _key(f.instance_number),
        _key(f.acquisition_number),
        f.sop_uid,
        f.frame,
    )


#: The attributes that name the volume a frame belongs to, in the order they are tried together.
_IDENTITY = (
    ("diffusion", diffusion.identity),
    ("TemporalPositionIdentifier", lambda f: f.temporal_position),
    ("TriggerTime", lambda f: f.trigger_time),
)


def volumes_by_identity(frames: list[Frame], clusters: list[list[Frame]]) -> list[list[Frame]] | None:
    """The volumes named by the acquisition itself: frames grouped by identity attributes that
    are present on every frame and not constant, the fewest first (diffusion alone before
    diffusion + TriggerTime, which some scanners set per slice). An identity repeated at one
    position (several b=0 volumes) is split in time order. A grouping counts when it gives
    exactly as many volumes as a position repeats and no volume mixes ImageType or echo (those
    are split first, see ``_resolve``). None when no grouping does."""
    present = []
    for _name, get in _IDENTITY:
        values = [get(f) for f in frames]
        if all(v is not None for v in values) and len(set(values)) > 1:
            present.append(get)
    position_of = {id(f): index for index, c in enumerate(clusters) for f in c}
    repeats = max(len(c) for c in clusters)
    for size in range(1, len(present) + 1):
        for parts in itertools.combinations(present, size):
            volumes = _group_by(frames, parts, position_of)
            if len(volumes) == repeats and all(_uniform(v) for v in volumes):
                return sorted(volumes, key=_volume_order)
    return None


def _uniform(frames: list[Frame]) -> bool:
    return len({(f.image_type, f.echo) for f in frames}) == 1


def _group_by(frames: list[Frame], parts, position_of: dict[int, int]) -> list[list[Frame]]:
    groups: dict[tuple, list[Frame]] = {}
    for f in frames:
        groups.setdefault(tuple(get(f) for get in parts), []).append(f)
    volumes: list[list[Frame]] = []
    for members in groups.values():
        # one identity acquired several times (several b=0 volumes): the n-th frame of each
        # position, in time order, belongs to its n-th volume
        at: dict[int, list[Frame]] = {}
        for f in members:
            at.setdefault(position_of[id(f)], []).append(f)
        ranked = [sorted(fs, key=time_order) for fs in at.values()]
        for rank in range(max(len(fs) for fs in ranked)):
            volumes.append([fs[rank] for fs in ranked if len(fs) > rank])
    return volumes


def _volume_order(members: list[Frame]) -> tuple:
    """Volumes in acquisition order: for enhanced frames their DimensionIndexValues, the last
    index most significant (as dcm2niix orders them); then the time of their first frame, then
    their smallest InstanceNumber."""
    first = min(members, key=time_order)
    indices = [f.dimension_index for f in members if f.dimension_index]
    dimension = min(tuple(reversed(i)) for i in indices) if len(indices) == len(members) else ()
    return (
        dimension,
        _key(first.temporal_position),
        _key(first.trigger_time),
        _key(first.acquisition_time),
        _key(first.content_time),
        min((_key(f.instance_number) for f in members), default=(True, 0)),
    )
