"""Diffusion encoding of an MR image: b-value and gradient direction in LPS, from any vendor.

Where the values come from, in order of trust:

* the Standard: Diffusion b-value (0018,9087) and Diffusion Gradient Orientation (0018,9089), at
  the top level of classic images (Philips) or in the MR Diffusion Macro (PS3.3 C.8.13.5.9) of
  enhanced ones, where the orientation sits in Diffusion Gradient Direction Sequence (0018,9076)
  and Diffusion Directionality (0018,9075) says whether there is one. The orientation is given
  in the patient coordinate system, i.e. LPS;
* Siemens: (0019,100C) b-value and (0019,100E) DiffusionGradientDirection, in LPS;
* GE: (0043,1039) first value is the b-value; (0019,10BB/BC/BD) are the gradient in the image
  frame (phase, frequency, slice), turned into LPS as dcm2niix's ``geCorrectBvecs`` does for
  head-first supine patients;
* Philips: (2001,1003) b-factor and (2005,10B0/B1/B2) direction RL/AP/FH, in LPS;
* United Imaging: (0065,1009) b-value and (0065,1037) gradient in the image frame (row, column,
  slice), as dcm2niix reads them.

A gradient is kept only for a directional image with b > 5 s/mm2 (dcm2niix's threshold); the
vector is normalised. Everything returned is LPS; the FSL convention of a written NIfTI is
computed only when writing (:func:`fsl_bvecs`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from DICOMPlusLib.loading.models import Frame, LoadWarning, point3

#: Below this b-value (s/mm2) a volume has no gradient (dcm2niix and FSL treat it as b=0).
B0_THRESHOLD = 5.0
#: Two b-values are the same when they differ by less than this (s/mm2).
B_TOLERANCE = 1e-3
#: Two gradients are the same when their components differ by less than this.
GRADIENT_TOLERANCE = 1e-3

#: Private attributes read for diffusion: pseudo-keyword -> (tag, VR). The classic path reads
#: them with the fast header scanner, which hands private values of implicit VR files over as bytes.
PRIVATE_TAGS: dict[str, tuple[int, str]] = {
    "SiemensDiffusionBValue": (0x0019100C, "IS"),
    "SiemensDiffusionGradient": (0x0019100E, "FD"),
    "GEDiffusionBValue": (0x00431039, "IS"),
    "GEDiffusionX": (0x001910BB, "DS"),
    "GEDiffusionY": (0x001910BC, "DS"),
    "GEDiffusionZ": (0x001910BD, "DS"),
    "PhilipsDiffusionBValue": (0x20011003, "FL"),
    "PhilipsDiffusionRL": (0x200510B0, "FL"),
    "PhilipsDiffusionAP": (0x200510B1, "FL"),
    "PhilipsDiffusionFH": (0x200510B2, "FL"),
    "UIHDiffusionBValue": (0x00651009, "FD"),
    "UIHDiffusionGradient": (0x00651037, "FD"),
}

#: Standard attributes read for diffusion (keyword -> tag).
STANDARD_TAGS: dict[str, int] = {
    "Manufacturer": 0x00080070,
    "PatientPosition": 0x00185100,
    "InPlanePhaseEncodingDirection": 0x00181312,
    "DiffusionBValue": 0x00189087,
    "DiffusionGradientOrientation": 0x00189089,
    "DiffusionDirectionality": 0x00189075,
    "SequenceName": 0x00180024,
}

_STRUCT = {"FD": "d", "FL": "f", "SS": "h", "US": "H", "SL": "i", "UL": "I"}


def decode(value: Any, vr: str) -> tuple[float, ...] | None:
    """Numbers of a value as the scanner or pydicom hand it over: text (IS/DS, backslash separated),
    numbers, sequences of numbers, or the raw bytes of a private element of an implicit VR file."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        code = _STRUCT.get(vr)
        if code is None:
            value = bytes(value).decode("latin-1")
        else:
            size = struct.calcsize(code)
            count = len(value) // size
            if count == 0:
                return None
            return tuple(float(x) for x in struct.unpack("<" + code * count, bytes(value)[: count * size]))
    parts: list[Any]
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("\x00", "").split("\\")]
    elif isinstance(value, int | float):
        parts = [value]
    else:
        try:
            parts = list(value)
        except TypeError:
            parts = [value]
    out = []
    for p in parts:
        if p == "" or p is None:
            continue
        try:
            out.append(float(p))
        except (TypeError, ValueError):
            return None
    return tuple(out) or None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    return str(value).strip().upper()


def _unit(v: Sequence[float] | None) -> np.ndarray | None:
    if v is None or len(v) < 3:
        return None
    a = np.asarray(v[:3], float)
    norm = float(np.linalg.norm(a))
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return a / norm


def _image_frame(orientation) -> np.ndarray | None:
    if orientation is None:
        return None
    r = np.asarray(orientation[:3], float)
    c = np.asarray(orientation[3:6], float)
    n = np.cross(r, c)
    if np.linalg.norm(n) < 1e-6:
        return None
    return np.column_stack([r, c, n / np.linalg.norm(n)])


def read(get: Callable[[str], Any], orientation) -> tuple[float | None, tuple[float, float, float] | None]:
    """(b-value, LPS unit gradient) of one image or frame; (None, None) when it says nothing
    about diffusion. ``get(keyword)`` returns a value (or None) for the keywords of
    STANDARD_TAGS, PRIVATE_TAGS and, for enhanced frames, ``DiffusionGradientDirectionSequence``."""
    b = _first(decode(get("DiffusionBValue"), "FD"))
    gradient = None
    if b is not None:
        gradient = _unit(decode(get("DiffusionGradientOrientation"), "FD"))
        if gradient is None:
            seq = get("DiffusionGradientDirectionSequence")
            if seq:
                try:
                    gradient = _unit(decode(seq[0].get("DiffusionGradientOrientation"), "FD"))
                except (AttributeError, IndexError, TypeError):
                    gradient = None
        if _text(get("DiffusionDirectionality")) in ("ISOTROPIC", "NONE"):
            gradient = None
    else:
        b, gradient = _vendor(get, orientation)
    if b is None:
        return None, None
    if b <= B0_THRESHOLD or gradient is None:
        return float(b), None
    return float(b), point3(gradient)


def _first(values) -> float | None:
    return float(values[0]) if values else None


def _vendor(get, orientation) -> tuple[float | None, np.ndarray | None]:
    maker = _text(get("Manufacturer"))

    def private(keyword: str):
        tag_vr = PRIVATE_TAGS[keyword]
        return decode(get(keyword), tag_vr[1])

    if "SIEMENS" in maker:
        b = _first(private("SiemensDiffusionBValue"))
        if b is not None:
            return b, _unit(private("SiemensDiffusionGradient"))
        return _siemens_csa(get)
    if "PHILIPS" in maker:
        b = _first(private("PhilipsDiffusionBValue"))
        parts = [private(k) for k in ("PhilipsDiffusionRL", "PhilipsDiffusionAP", "PhilipsDiffusionFH")]
        vector = [p[0] for p in parts if p] if all(parts) else None
        return b, _unit(vector)
    if maker.startswith("GE") or "GENERAL ELECTRIC" in maker:
        values = private("GEDiffusionBValue")
        if not values:
            return None, None
        b = values[0] % 1e9 if values[0] >= 1e9 else values[0]  # some versions add 1e9
        parts = [private(k) for k in ("GEDiffusionX", "GEDiffusionY", "GEDiffusionZ")]
        if not all(parts):
            return b, None
        return b, _ge_to_lps([p[0] for p in parts], get, orientation)
    if maker.startswith("UIH") or "UNITED IMAGING" in maker:
        b = _first(private("UIHDiffusionBValue"))
        frame = _image_frame(orientation)
        g = _unit(private("UIHDiffusionGradient"))
        return b, (frame @ g if frame is not None and g is not None else None)
    return None, None


def _siemens_csa(get) -> tuple[float | None, np.ndarray | None]:
    """B_value and DiffusionGradientDirection (LPS) of the CSA image header (0029,1010), read
    only for images that say they are diffusion weighted (ImageType DIFFUSION or a ``*ep_b``
    sequence), where the (0019,100C/100E) copies are missing."""
    image_type = _text(get("ImageType"))
    sequence = _text(get("SequenceName"))
    if "DIFFUSION" not in image_type and "EP_B" not in sequence:
        return None, None
    from DICOMPlusLib.loading.mosaic import csa_values

    raw = get("SiemensCSAImageHeader")
    csa = csa_values(raw.encode("latin-1") if isinstance(raw, str) else raw)
    b = _first(decode("\\".join(csa.get("B_value", [])), "DS"))
    gradient = _unit(decode("\\".join(csa.get("DiffusionGradientDirection", [])), "FD"))
    return b, gradient


def _ge_to_lps(v: list[float], get, orientation) -> np.ndarray | None:
    """GE's (phase, frequency, slice) gradient to LPS, following dcm2niix ``geCorrectBvecs``
    (validated by its authors for head-first supine patients; other positions give None)."""
    frame = _image_frame(orientation)
    if frame is None or _unit(v) is None:
        return None
    position = _text(get("PatientPosition"))
    if position and position != "HFS":
        return None
    x, y, z = (float(a) for a in v)
    if _text(get("InPlanePhaseEncodingDirection")).startswith("ROW"):
        x, y = y, x
        y = -y
    normal = frame[:, 2]
    axis = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
    flip = {0: (1, 1, 0), 1: (0, 1, 1), 2: (0, 0, 1)}[axis]
    out = [x, y, z]
    for i in range(3):
        if flip[i]:
            out[i] = -out[i]
    out[1] = -out[1]
    out = [-a for a in out]
    # out is now dcm2niix's bvec: image axes (row, -column, slice); back to LPS.
    bvec = np.array(out, float)
    return _unit(frame @ (bvec * np.array([1.0, -1.0, 1.0])))


# -- volumes --------------------------------------------------------------------------------------
def identity(f: Frame) -> tuple | None:
    """What makes a diffusion volume: its b-value and gradient (rounded so that float noise
    does not split a volume); None for a frame that says nothing about diffusion."""
    if f.diffusion_b is None:
        return None
    g = f.diffusion_gradient
    return (
        round(f.diffusion_b / B_TOLERANCE) * B_TOLERANCE,
        None if g is None else tuple(round(x / GRADIENT_TOLERANCE) * GRADIENT_TOLERANCE + 0.0 for x in g),
    )


def same_encoding(a: Frame, b: Frame) -> bool:
    if (a.diffusion_b is None) != (b.diffusion_b is None):
        return False
    if a.diffusion_b is None:
        return True
    if b.diffusion_b is None or abs(a.diffusion_b - b.diffusion_b) > max(
        B_TOLERANCE, 1e-6 * abs(a.diffusion_b)
    ):
        return False
    ga, gb = a.diffusion_gradient, b.diffusion_gradient
    if ga is None or gb is None:
        return ga is None and gb is None
    return max(abs(x - y) for x, y in zip(ga, gb, strict=True)) <= 10 * GRADIENT_TOLERANCE


def homogeneity_warnings(time_points: Sequence[Sequence[Frame]]) -> list[LoadWarning]:
    """A warning for every volume whose slices do not share one b-value and gradient (PS3.3
    C.8.13.5.9: the encoding is a property of the whole volume)."""
    out = []
    for t, frames in enumerate(time_points):
        if not frames or all(f.diffusion_b is None for f in frames):
            continue
        odd = [f for f in frames[1:] if not same_encoding(frames[0], f)]
        if odd:
            out.append(
                LoadWarning(
                    "diffusion_mixed",
                    f"volume {t + 1} mixes diffusion encodings: {len(odd)} of {len(frames)} slices differ from "
                    f"b={frames[0].diffusion_b:g} gradient {_fmt(frames[0].diffusion_gradient)}; the series "
                    "cannot be split into homogeneous volumes and its diffusion values are unreliable",
                    tuple(dict.fromkeys(f.label for f in odd)),
                )
            )
    return out


def _fmt(g) -> str:
    return "none" if g is None else "[" + ", ".join(f"{x:.4f}" for x in g) + "]"


def direction_warnings(bvals, gradients) -> list[LoadWarning]:
    """Diffusion-weighted volumes without a direction are derived images (trace, isotropic, ADC)
    that tensor fitting must leave out (dcm2niix warns the same)."""
    odd = [
        t + 1
        for t, (b, g) in enumerate(zip(bvals, gradients, strict=True))
        if b > B0_THRESHOLD and not any(g)
    ]
    if not odd:
        return []
    return [
        LoadWarning(
            "diffusion_without_direction",
            f"volume(s) {', '.join(str(t) for t in odd)} have b > {B0_THRESHOLD:g} but no gradient direction: "
            "probably derived (trace/isotropic/ADC) images; leave them out of tensor or model fitting",
        )
    ]


def volume_encoding(
    time_points: Sequence[Sequence[Frame]],
) -> tuple[tuple[float, ...], tuple[tuple[float, float, float], ...]] | None:
    """(bvals, LPS gradients) per volume, zeros where b <= 5 or there is no direction; None when
    no frame carries a b-value."""
    if not any(f.diffusion_b is not None for tp in time_points for f in tp):
        return None
    bvals: list[float] = []
    gradients: list[tuple[float, float, float]] = []
    for frames in time_points:
        f = frames[0]
        b = float(f.diffusion_b) if f.diffusion_b is not None else 0.0
        g = (
            f.diffusion_gradient
            if (f.diffusion_gradient is not None and b > B0_THRESHOLD)
            else (0.0, 0.0, 0.0)
        )
        bvals.append(b)
        gradients.append(point3(g))
    return tuple(bvals), tuple(gradients)


# -- FSL files --------------------------------------------------------------------------------------
def fsl_bvecs(gradients_lps: Sequence[Sequence[float]], ijk_to_lps: np.ndarray) -> np.ndarray:
    """Gradients in FSL's convention for a NIfTI whose voxel->LPS matrix is ``ijk_to_lps`` (3, T):
    components along the image axes i, j, k, with x negated when the determinant of the NIfTI
    (RAS) affine is positive (FSL's radiological voxel order), as dcm2niix writes .bvec."""
    m = np.asarray(ijk_to_lps, float)[:3, :3]
    axes = m / np.linalg.norm(m, axis=0)
    g = np.asarray(gradients_lps, float).reshape(-1, 3)
    # components along possibly non-orthogonal axes: solve axes @ c = g
    comps = np.linalg.solve(axes, g.T)
    norms = np.linalg.norm(comps, axis=0)
    comps = np.where(norms > 0, comps / np.where(norms > 0, norms, 1.0), 0.0)
    ras = np.diag([-1.0, -1.0, 1.0]) @ m
    if np.linalg.det(ras) > 0:
        comps[0] = -comps[0]
    return comps + 0.0


def write_fsl(bvals: Sequence[float], gradients_lps, ijk_to_lps: np.ndarray, stem) -> tuple[str, str]:
    """Write ``stem.bval`` and ``stem.bvec`` (FSL: one line of b-values; three lines x, y, z)."""
    from pathlib import Path

    stem = Path(stem)
    bval = stem.with_name(stem.name + ".bval")
    bvec = stem.with_name(stem.name + ".bvec")
    bval.write_text(" ".join(_num(b) for b in bvals) + "\n")
    comps = fsl_bvecs(gradients_lps, ijk_to_lps)
    bvec.write_text("".join(" ".join(_num(x) for x in row) + "\n" for row in comps))
    return str(bval), str(bvec)


def _num(x: float) -> str:
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
