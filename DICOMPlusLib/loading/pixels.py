"""Pixel data into one preallocated array, in geometric order, with the modality rescale.

Native (uncompressed) pixel data is read with ``readinto`` at the offset stored at import time,
straight into the volume's own memory: no per-slice arrays, no stacking, no second copy. Stored
values become output values in place (PS3.3 C.7.6.3.1.1 / C.11.1.1.2): unused high bits are
masked or sign-extended (PS3.5 8.1.1), then ``value * RescaleSlope + RescaleIntercept`` is
computed modulo 2**16 in the output's own bytes, which is exact whenever the result fits int16.

dtype policy: int16 when every rescaled value is an integer that fits int16 (integer slope and
intercept, and the bit depth or the data prove the range), float32 otherwise. Colour data gets a
last axis of 3 and is always RGB, equal to pydicom's converted pixels (PS3.3 C.7.6.3.1.2):
RGB keeps its stored type; YBR_FULL / YBR_FULL_422 (native or JPEG) are converted to RGB;
PALETTE COLOR goes through its lookup tables (uint16, the tables' 16-bit range). Those, and
8-bit data of big-endian files (whose OW pixel data is byte-swapped in words, PS3.5 A.3), are
decoded by pydicom rather than read in place.

Compressed frames are decoded one at a time by pydicom's decoders, choosing the permissively
licensed plugins: GDCM for JPEG (lossless and baseline), pyjpegls (CharLS) for JPEG-LS,
pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-rle (or pydicom) for RLE. pylibjpeg-libjpeg (GPL) is
never needed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from DICOMPlusLib import uids
from DICOMPlusLib.errors import CancelledError, LoadError
from DICOMPlusLib.loading import jpegls
from DICOMPlusLib.loading.models import Frame, VolumeInfo
from DICOMPlusLib.uninterrupted import uninterrupted

IMPLICIT_LE = uids.ImplicitVRLittleEndian
EXPLICIT_LE = uids.ExplicitVRLittleEndian
EXPLICIT_BE = uids.ExplicitVRBigEndian
NATIVE = uids.NATIVE_SYNTAXES
DEFLATED = uids.DeflatedExplicitVRLittleEndian  # the data set is zlib-deflated

#: Decoder plugins in order of preference per transfer syntax (first available wins).
PLUGINS: dict[str, tuple[str, ...]] = {
    uids.JPEGBaseline8Bit: ("gdcm", "pillow"),  # JPEG baseline
    uids.JPEGExtended12Bit: ("gdcm", "pillow"),  # JPEG extended
    uids.JPEGLossless: ("gdcm",),  # JPEG lossless
    uids.JPEGLosslessSV1: ("gdcm",),  # JPEG lossless SV1
    uids.JPEGLSLossless: ("pyjpegls", "gdcm"),  # JPEG-LS lossless
    uids.JPEGLSNearLossless: ("pyjpegls", "gdcm"),  # JPEG-LS near-lossless
    uids.JPEG2000Lossless: ("pylibjpeg", "gdcm", "pillow"),  # JPEG 2000 lossless
    uids.JPEG2000: ("pylibjpeg", "gdcm", "pillow"),  # JPEG 2000
    uids.HTJ2KLossless: ("pylibjpeg",),  # HTJ2K lossless
    uids.HTJ2KLosslessRPCL: ("pylibjpeg",),  # HTJ2K lossless RPCL
    uids.HTJ2K: ("pylibjpeg",),  # HTJ2K
    uids.RLELossless: ("pylibjpeg", "pydicom"),  # RLE lossless
}

_INT16_MIN, _INT16_MAX = -32768, 32767
_BLOCK = 24  # frames per unit of work
#: From this size on, the C heap's free pages are given back before the volume is allocated.
_TRIM_BYTES = 32 * 1024 * 1024


class _Overflow(Exception):
    """The data do not fit the int16 chosen from the headers: read again as float32."""


def _is_integer(x: float) -> bool:
    return float(x).is_integer()


def stored_range(f: Frame) -> tuple[int, int]:
    bits = max(1, min(f.bits_stored, f.bits_allocated))
    if f.pixel_representation:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


PALETTE = "PALETTE COLOR"


def output_components(f: Frame) -> int:
    """Samples per output voxel: 3 for colour (PALETTE COLOR becomes RGB), else 1."""
    return 3 if f.photometric == PALETTE or f.samples_per_pixel > 1 else 1


def needs_pydicom(f: Frame) -> bool:
    """Frames that cannot be read in place: YBR colour (chroma subsampling, conversion to RGB),
    palette colour (lookup tables), 8-bit big-endian data (word-swapped bytes), and compressed
    colour, which pydicom presents as RGB whatever the codec stored (JPEG's own YCbCr)."""
    if f.photometric.startswith("YBR") or f.photometric == PALETTE:
        return True
    if f.samples_per_pixel > 1 and f.transfer_syntax not in NATIVE:
        return True
    return f.transfer_syntax == EXPLICIT_BE and f.bits_allocated == 8


def choose_dtype(frames: Sequence[Frame]) -> tuple[np.dtype, bool]:
    """(output dtype, whether the int16 range must be checked on the data)."""
    f0 = frames[0]
    if f0.photometric == PALETTE:
        return np.dtype(np.uint16), False
    if f0.samples_per_pixel > 1:
        return np.dtype(np.uint8 if f0.bits_allocated <= 8 else np.uint16), False
    check = False
    for f in frames:
        slope, intercept = f.rescale_slope, f.rescale_intercept
        if f.bits_allocated > 16 or not (_is_integer(slope) and _is_integer(intercept)) or slope == 0:
            return np.dtype(np.float32), False
        lo, hi = stored_range(f)
        ends = (slope * lo + intercept, slope * hi + intercept)
        if min(ends) < _INT16_MIN or max(ends) > _INT16_MAX:
            check = True
    return np.dtype(np.int16), check


def frame_bytes(f: Frame) -> int:
    return f.rows * f.columns * f.samples_per_pixel * (f.bits_allocated // 8)  # type: ignore[operator]


def _stored_dtype(f: Frame) -> np.dtype:
    if f.bits_allocated not in (8, 16, 32):
        raise LoadError(
            f"{f.path}: BitsAllocated {f.bits_allocated} is not supported for volumes (8, 16 or 32 are)"
        )
    kind = "i" if f.pixel_representation else "u"
    order = ">" if f.transfer_syntax == EXPLICIT_BE else "<"
    return np.dtype(f"{order}{kind}{f.bits_allocated // 8}")


def _fix_bits(values: np.ndarray, f: Frame) -> None:
    """Clear (unsigned) or sign-extend (signed) the bits above BitsStored, in place."""
    width = values.dtype.itemsize * 8
    bits = f.bits_stored
    if not 0 < bits < width:
        return
    if f.pixel_representation:
        shift = width - bits
        np.left_shift(values, shift, out=values)
        np.right_shift(values, shift, out=values)
    else:
        np.bitwise_and(values, (1 << bits) - 1, out=values)


class _Reader:
    """Reads frames into ``flat`` (frames x rows x columns[, samples]); one per worker thread."""

    def __init__(self, flat: np.ndarray, check: bool):
        self.flat = flat
        self.check = check
        self._scratch: dict[tuple, np.ndarray] = {}

    def scratch(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        key = (shape, dtype.str)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty(shape, dtype)
        return buf

    def read(self, items: Sequence[tuple[int, Frame]]) -> None:
        converted = [(i, f) for i, f in items if needs_pydicom(f)]
        native = [(i, f) for i, f in items if f.transfer_syntax in NATIVE and not needs_pydicom(f)]
        encoded = [(i, f) for i, f in items if f.transfer_syntax not in NATIVE and not needs_pydicom(f)]
        if native:
            self._read_native(native)
        if encoded:
            self._read_encoded(encoded)
        if converted:
            self._read_encoded(converted, convert=True)

    # -- native --------------------------------------------------------------------------------
    def _read_native(self, items: Sequence[tuple[int, Frame]]) -> None:
        handle = None
        current = None
        try:
            for index, f in items:
                if f.path != current:
                    if handle is not None:
                        _close(handle)
                        handle = None
                    try:
                        handle = _open(f.path)
                    except OSError as exc:
                        raise LoadError(f"cannot read {f.path}: {exc.strerror or exc}") from exc
                    current = f.path
                size = frame_bytes(f)
                if f.pixel_length >= 0 and (f.frame + 1) * size > f.pixel_length:
                    raise LoadError(
                        f"{f.label}: pixel data holds {f.pixel_length} bytes, frame {f.frame + 1} needs "
                        f"{(f.frame + 1) * size} ({f.rows}x{f.columns}, {f.bits_allocated} bits): file is inconsistent"
                    )
                self._native_frame(handle, index, f, size)
        finally:
            if handle is not None:
                _close(handle)

    def _native_frame(self, handle, index: int, f: Frame, size: int) -> None:
        dst = self.flat[index]
        stored = _stored_dtype(f)
        direct = dst.dtype.itemsize == stored.itemsize and dst.dtype.kind in "iu" and f.samples_per_pixel == 1
        shape = dst.shape
        if f.samples_per_pixel > 1 and f.planar_configuration == 1:
            shape = (f.samples_per_pixel, f.rows, f.columns)
        target = dst if direct else self.scratch(shape, stored)
        view = target.data.cast("B")
        try:
            got = _read_at(handle, view, f.pixel_offset + f.frame * size)
        except OSError as exc:
            raise LoadError(f"cannot read {f.path}: {exc.strerror or exc}") from exc
        if got != size:
            raise LoadError(f"{f.label}: truncated pixel data ({got} of {size} bytes)")
        if direct:
            if stored.byteorder == ">":
                dst.byteswap(inplace=True)
            self._rescale_in_place(dst, f)
        else:
            values = target.astype(stored.newbyteorder("=")) if stored.byteorder == ">" else target
            self._convert(values, dst, f)

    # -- encapsulated -------------------------------------------------------------------------
    def _read_encoded(self, items: Sequence[tuple[int, Frame]], convert: bool = False) -> None:
        """Frames decoded by pydicom; ``convert``: as pydicom presents them (YBR as RGB,
        big-endian words swapped, palette indices through the colour lookup tables)."""
        from pydicom.pixels import get_decoder, iter_pixels, pixel_array

        by_path: dict[str, list[tuple[int, Frame]]] = {}
        for index, f in items:
            by_path.setdefault(f.path, []).append((index, f))
        for path, members in by_path.items():
            ts = members[0][1].transfer_syntax
            plugin = ""
            try:
                decoder = get_decoder(ts)
                available = decoder.available_plugins
            except (NotImplementedError, ValueError, AttributeError):
                available = ()
            for name in PLUGINS.get(ts, ()):
                if name in available:
                    plugin = name
                    break
            indices = [f.frame for _, f in members]
            if ts in jpegls.SYNTAXES:  # CharLS takes seconds to give up on a truncated scan
                jpegls.check_frames(path, [f for _, f in members])
            palette = _palette_header(path) if members[0][1].photometric == PALETTE else None
            arrays: Iterable[np.ndarray]
            try:
                if convert and ts in NATIVE:  # pydicom 3.0's iter_pixels mis-sizes native YBR_FULL_422
                    arrays = (pixel_array(path, index=i, raw=False) for i in indices)
                elif ts == DEFLATED:  # iter_pixels cannot read a deflated file: inflate it whole
                    arrays = _deflated_frames(path, indices, raw=not convert)
                else:
                    arrays = iter_pixels(path, indices=indices, raw=not convert, decoding_plugin=plugin)
                for (index, f), array in zip(members, arrays, strict=True):
                    values = np.asarray(array)
                    if palette is not None:
                        from pydicom.pixels import apply_color_lut

                        values = apply_color_lut(values, palette)
                    if values.dtype.byteorder == ">":
                        values = values.astype(values.dtype.newbyteorder("="))
                    if values.shape != self.flat[index].shape:
                        values = values.reshape(self.flat[index].shape)
                    self._convert(values, self.flat[index], f)
            except LoadError:
                raise
            except Exception as exc:  # decoders raise anything from RuntimeError to ValueError
                raise LoadError(
                    f"cannot decode {path} (transfer syntax {ts}, plugin {plugin or 'pydicom default'}): {exc}"
                ) from exc

    # -- values ----------------------------------------------------------------------------------
    def _rescale_in_place(self, dst: np.ndarray, f: Frame) -> None:
        """dst holds stored values in the output's bytes; make them output values."""
        if dst.dtype.kind == "f" or f.samples_per_pixel > 1:
            return
        signed_view = (
            dst if f.pixel_representation else dst.view(np.uint16 if dst.itemsize == 2 else np.uint8)
        )
        _fix_bits(signed_view, f)
        slope, intercept = int(f.rescale_slope), int(f.rescale_intercept)
        if self.check:
            _check_range(signed_view, slope, intercept, f)
        if slope == 1 and intercept == 0:
            return
        u = dst.view(np.uint16)
        if slope != 1:
            np.multiply(u, np.uint16(slope % 65536), out=u)
        if intercept:
            np.add(u, np.uint16(intercept % 65536), out=u)

    def _convert(self, values: np.ndarray, dst: np.ndarray, f: Frame) -> None:
        """Stored values in their own array -> output values in dst."""
        if dst.ndim == 3:  # colour: RGB values as they are
            if (
                f.planar_configuration == 1
                and values.shape[0] == f.samples_per_pixel
                and values.shape[-1] != dst.shape[-1]
            ):
                values = np.moveaxis(values, 0, -1)
            np.copyto(dst, values.reshape(dst.shape), casting="unsafe")
            return
        if values.dtype.kind in "iu" and values.flags.writeable:
            _fix_bits(values, f)
        elif values.dtype.kind in "iu":
            values = values.copy()
            _fix_bits(values, f)
        if dst.dtype == np.int16:
            if self.check:
                _check_range(values, int(f.rescale_slope), int(f.rescale_intercept), f)
            u = dst.view(np.uint16)
            np.copyto(u, values, casting="unsafe")  # modulo 2**16
            self._rescale_in_place_modular(u, f)
        else:
            np.copyto(
                dst, values * np.float64(f.rescale_slope) + np.float64(f.rescale_intercept), casting="unsafe"
            )

    @staticmethod
    def _rescale_in_place_modular(u: np.ndarray, f: Frame) -> None:
        slope, intercept = int(f.rescale_slope), int(f.rescale_intercept)
        if slope != 1:
            np.multiply(u, np.uint16(slope % 65536), out=u)
        if intercept:
            np.add(u, np.uint16(intercept % 65536), out=u)


# A frame is read at its offset straight into the volume: with ``preadv`` that is one system
# call (and one hand-over of the GIL) per frame between the file's open and close, where a
# file object also calls fstat and lseek (5 calls a slice instead of 3). Elsewhere (Windows):
# the file object's seek and readinto.
_PREADV = hasattr(os, "preadv")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _open(path: str):
    return os.open(path, _OPEN_FLAGS) if _PREADV else open(path, "rb", buffering=0)


def _read_at(handle, view, offset: int) -> int:
    if _PREADV:
        return os.preadv(handle, [view], offset)
    handle.seek(offset)
    return handle.readinto(view)


def _close(handle) -> None:
    if _PREADV:
        os.close(handle)
    else:
        handle.close()


def _palette_header(path: str):
    """The header of a PALETTE COLOR file (its lookup tables come before the pixel data)."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise LoadError(f"cannot read the colour lookup tables of {path}: {exc}") from exc


def _check_range(values: np.ndarray, slope: int, intercept: int, f: Frame) -> None:
    lo = int(values.min())
    hi = int(values.max())
    ends = (slope * lo + intercept, slope * hi + intercept)
    if min(ends) < _INT16_MIN or max(ends) > _INT16_MAX:
        raise _Overflow(f.label)


def read_pixels(
    info: VolumeInfo,
    *,
    workers: int | None = None,
    progress=None,
    cancel=None,
    memory=None,
) -> np.ndarray:
    """The voxels of ``info`` as one array of ``info.shape`` (+ samples), in its frame order.
    ``memory``: an anonymous mapping to hold them when it is large enough (see
    :mod:`DICOMPlusLib.loading.ahead`)."""
    frames = info.frames
    dtype, check = choose_dtype(frames)
    try:
        return _read_all(info, dtype, check, workers, progress, cancel, memory)
    except _Overflow as exc:
        from DICOMPlusLib._log import get_logger  # only here: a load does not import logging

        get_logger(__name__).info("%s: values exceed int16, reading again as float32", exc)
        return _read_all(info, np.dtype(np.float32), False, workers, progress, cancel)


def mapped_bytes(info: VolumeInfo) -> int:
    """The bytes of the mapping :func:`read_pixels` makes for the voxels of ``info`` (unless
    they turn out not to fit int16); 0 for a volume small enough for an ordinary array."""
    if not _mapped(info.frames):
        return 0
    return int(np.prod(info.shape)) * info.components * choose_dtype(info.frames)[0].itemsize


def _mapped(frames) -> bool:
    """Whether the voxels of ``frames`` get a mapping of their own (:func:`_volume_array`), the
    free heap released first: a volume of _TRIM_BYTES or more stored bytes."""
    return len(frames) * frame_bytes(frames[0]) >= _TRIM_BYTES


def _read_all(
    info: VolumeInfo, dtype: np.dtype, check: bool, workers, progress, cancel, memory=None
) -> np.ndarray:
    frames = info.frames
    shape = tuple(info.shape) + ((info.components,) if info.components > 1 else ())
    if _mapped(frames):
        release_free_heap()
        out = _volume_array(shape, dtype, memory)
    else:
        out = np.empty(shape, dtype)
    per_frame = out.shape[-3:] if info.components > 1 else out.shape[-2:]
    flat = out.reshape((len(frames), *per_frame))
    items = list(enumerate(frames))
    blocks = [items[i : i + _BLOCK] for i in range(0, len(items), _BLOCK)]
    if workers is None:
        total_bytes = out.nbytes
        workers = min(2, os.cpu_count() or 1) if total_bytes > 8 * 1024 * 1024 and len(blocks) > 1 else 1
    done = 0
    if workers <= 1:
        reader = _Reader(flat, check)
        for block in blocks:
            if cancel is not None and getattr(cancel, "cancelled", False):
                raise CancelledError("Cancelled by the user while reading pixels.")
            reader.read(block)
            done += len(block)
            if progress is not None:
                progress(done, len(frames), block[-1][1].path)
        return out
    _read_on_threads(flat, check, blocks, workers, progress, cancel)
    return out


def _read_on_threads(flat: np.ndarray, check: bool, blocks: list, workers: int, progress, cancel) -> None:
    """Read ``blocks`` on ``workers`` threads. ``progress`` is called on the calling thread (it
    may touch a UI) as blocks are read, ``cancel`` is checked there; a cancel or an error stops
    the threads after their current block, and the error of the first block that failed is
    raised here.

    Plain threads and a condition rather than ``concurrent.futures``: its import (with
    ``queue`` and ``heapq``) is ~2 ms of a folder load as a process, and it adds nothing here."""
    pending = list(reversed(blocks))
    finished: list = []
    failed: list[BaseException] = []
    state = threading.Condition()
    stop = False

    def work() -> None:
        reader = _Reader(flat, check)
        while True:
            with state:
                if stop or failed or not pending:
                    return
                block = pending.pop()
            try:
                reader.read(block)
            except BaseException as exc:  # handed to the calling thread, which raises it
                with state:
                    failed.append(exc)
                    state.notify()
                return
            with state:
                finished.append(block)
                state.notify()

    threads = [
        threading.Thread(target=work, name=f"dicomplus-pixels-{k}", daemon=True) for k in range(workers)
    ]
    # The calling thread's uses of the condition (and Thread.start's of its own) run
    # ``uninterrupted``: the CLI's Ctrl-C raised just after one had taken its lock left it held,
    # the readers blocked on it and the join below waiting for them forever. The wait is in
    # slices of 0.2 s, so that a Ctrl-C held back meanwhile comes within one.
    total = sum(len(block) for block in blocks)
    done = 0
    try:
        with uninterrupted:
            for thread in threads:
                thread.start()
        while done < total:
            if cancel is not None and getattr(cancel, "cancelled", False):
                raise CancelledError("Cancelled by the user while reading pixels.")
            with uninterrupted, state:
                if not finished and not failed:
                    state.wait(0.2)
                if failed:
                    raise failed[0]
                ready, finished[:] = finished[:], []
            for block in ready:
                done += len(block)
                if progress is not None:
                    progress(done, total, block[-1][1].path)
    finally:
        with uninterrupted:  # the readers end their block (the unit of work), then the interrupt goes on
            with state:
                stop = True
            for thread in threads:
                if thread.ident is not None:  # started
                    thread.join()


def _volume_array(shape: tuple, dtype: np.dtype, memory=None) -> np.ndarray:
    """An uninitialised array for a large volume, in ordinary 4 KiB pages on Linux.

    numpy asks for transparent huge pages (``MADV_HUGEPAGE``) for any large array. In a fresh
    process on this project's shared (virtualised) test machine, those faults cost 0.3-0.6 s of
    system time for a 150 MiB volume while other jobs churn memory, against 0.12-0.16 s for 4 KiB
    pages (``python -m bench load``, same run; SimpleITK's malloc'd volume gets 4 KiB pages too).
    Huge pages only win when freed ones are at hand (a second load in the same process), which
    saves ~60 ms: a loss bounded by that is taken over an unbounded one. Elsewhere: ``np.empty``.
    ``memory``: such a mapping made (and faulted in) ahead, used when it is large enough."""
    count = int(np.prod(shape))
    if memory is not None and len(memory) >= count * dtype.itemsize:
        return np.frombuffer(memory, dtype, count).reshape(shape)
    if not sys.platform.startswith("linux"):
        return np.empty(shape, dtype)
    import mmap

    memory = mmap.mmap(-1, count * dtype.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(memory, dtype).reshape(shape)


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim(3)``; elsewhere
    nothing is done). Imports and the headers of a plan leave ~1 MB of freed but resident pages
    in the heap; a large volume is then allocated in fresh pages beside them, so without this
    they stay counted in the load's peak memory (issue 19: peak <= 1.2x the volume's bytes)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # numpy has imported it already

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def read_frame(f: Frame, dtype: np.dtype | None = None) -> np.ndarray:
    """One frame's output values: rows x columns[, samples]. 1-bit frames (a binary SEG's) are
    read by :func:`DICOMPlusLib.loading.preview.read_frame`, which takes any frame."""
    dtype = dtype or choose_dtype([f])[0]
    components = output_components(f)
    if f.rows is None or f.columns is None:
        raise LoadError(f"{f.label}: no Rows / Columns, no pixels to read")
    shape = (1, f.rows, f.columns) + ((components,) if components > 1 else ())
    out = np.empty(shape, dtype)
    try:
        _Reader(out, dtype == np.int16 and choose_dtype([f])[1]).read([(0, f)])
    except _Overflow:
        out = np.empty(shape, np.float32)
        _Reader(out, False).read([(0, f)])
    return out[0]


def _deflated_frames(path: str, indices: Sequence[int], *, raw: bool):
    """The frames ``indices`` of a Deflated Explicit VR Little Endian file (PS3.5 A.5): pydicom
    inflates the data set on reading; its pixel data are then native."""
    import pydicom
    from pydicom.pixels import pixel_array

    ds = pydicom.dcmread(path)
    for index in indices:
        yield pixel_array(ds, index=index, raw=raw)
