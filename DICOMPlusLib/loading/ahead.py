"""A folder's volume memory, mapped and faulted in while the process imports and scans headers.

A fresh process that loads a large volume spends ~0.12-0.16 s of system time faulting in the
volume's pages (150 MiB: 38,400 pages, each allocated and zeroed by the kernel), and used to do
so after the imports and the header scan, while the second core waited. Here a thread does it
first: it guesses the volume's size from the first image's pixel data and the number of files,
maps twice that much anonymous memory (room for float32 voxels; 4 KiB pages, as
:func:`DICOMPlusLib.loading.pixels._volume_array` maps a volume) and faults the guessed bytes in
by reading ``/dev/zero`` into them, 8 MiB a call: each ``readv`` releases the GIL and holds no
lock of the address space across the range (``MADV_POPULATE_WRITE`` does, and numpy's import,
which maps its libraries, waited for it). It pays only while the second core is free: OpenBLAS's
idle worker no longer spins on it after numpy's import (:mod:`DICOMPlusLib._numpy`).

The guess decides nothing but whether this work is used: once the plan is made, the load says
how many bytes its volume needs (:meth:`VolumeAhead.finish`); the thread stops after its current
call, and the mapping is used as the volume when it is large enough (pages faulted beyond the
volume are given back), dropped otherwise. The voxels are read into it as into a fresh mapping.

Standard library only (see :mod:`DICOMPlusLib.loading.folder`).
"""

from __future__ import annotations

import mmap
import os
import sys
import threading

from DICOMPlusLib import uids

#: Faulted in per system call (the thread's loop checks between chunks whether to stop).
CHUNK_BYTES = 8 * 1024 * 1024
#: No mapping below this (a small volume's faults cost little); :mod:`.pixels` maps a volume
#: of its own from the same size on.
MIN_BYTES = 32 * 1024 * 1024
#: Never more than this is faulted in ahead, nor more than half the memory that is free: the
#: guess counts every file, and a folder of several series holds more than its first volume.
MAX_BYTES = 512 * 1024 * 1024
_HEAD_BYTES = (16 * 1024, 256 * 1024)
_LOOK_AT = 8  # files looked at for the first image (a README, a DICOMDIR may come first)
_NATIVE_LE = frozenset({uids.ImplicitVRLittleEndian, uids.ExplicitVRLittleEndian})


def guess_bytes(files: list[str]) -> int:
    """The bytes of a folder's volume if every file held one frame like the first image: its
    native pixel data's length times the number of files (0 when the first Part 10 file among
    the first few holds no native pixel data, or the folder is small)."""
    from DICOMPlusLib.database.headerscan import NeedMoreData, ScanError, scan

    for path in files[:_LOOK_AT]:
        try:
            if os.stat(path).st_size * len(files) < MIN_BYTES:  # a small folder's are not opened
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            for size in _HEAD_BYTES:
                head = os.pread(fd, size, 0)
                if head[128:132] != b"DICM":
                    break
                try:
                    found = scan(head, frozenset(), complete=len(head) < size)
                except NeedMoreData:
                    continue
                except ScanError:
                    return 0
                if not found.pixel_tag:  # a DICOMDIR, a report: no image, look further
                    break
                if found.transfer_syntax not in _NATIVE_LE or found.pixel_length <= 0:
                    return 0  # compressed (or big endian): its volume's size is not this
                total = found.pixel_length * len(files)
                return total if total >= MIN_BYTES else 0
        except OSError:
            continue
        finally:
            os.close(fd)
    return 0


class VolumeAhead:
    """The thread that maps and faults in a folder's volume (Linux; elsewhere it does nothing)."""

    def __init__(self, files: list[str]):
        self.files = files
        self.memory: mmap.mmap | None = None
        self._limit = MAX_BYTES
        self._faulted = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if sys.platform.startswith("linux") and len(self.files) > 1:
            self._thread = threading.Thread(target=self._run, name="dicomplus-volume-ahead", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._fault_in()
        except Exception:  # a failed guess costs the load nothing: it reads as it did before
            self.memory = None

    def _fault_in(self) -> None:
        size = guess_bytes(self.files)
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        ahead = min(size, MAX_BYTES, free // 2)
        if ahead < MIN_BYTES:
            return
        try:
            zero = os.open("/dev/zero", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return
        try:
            # twice the stored bytes: room for float32 voxels of 16-bit data (a fractional
            # rescale); address space only, the pages past ``ahead`` are faulted by the readers
            memory = mmap.mmap(-1, 2 * size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError:
            os.close(zero)
            return
        self.memory = memory
        view = memoryview(memory)
        try:
            done = 0
            while True:
                with self._lock:
                    end = min(ahead, self._limit)
                    self._faulted = done
                if done >= end:
                    return
                done += os.readv(zero, [view[done : min(end, done + CHUNK_BYTES)]])
        except OSError:
            return
        finally:
            view.release()
            os.close(zero)

    def finish(self, needed: int) -> mmap.mmap | None:
        """Stop faulting beyond ``needed`` bytes and wait for the thread; the mapping when it
        holds at least ``needed`` bytes (the pages faulted beyond them given back), else None
        (the mapping dropped). ``needed`` 0: nothing is used."""
        with self._lock:  # from here the pixel readers fault in what is left, on two threads
            self._limit = min(needed, self._faulted + CHUNK_BYTES)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        memory, self.memory = self.memory, None
        if memory is None or needed <= 0 or len(memory) < needed:
            if memory is not None:
                memory.close()
            return None
        page = mmap.PAGESIZE
        start = -(-needed // page) * page
        if self._faulted > start:
            memory.madvise(mmap.MADV_DONTNEED, start, min(len(memory), self._faulted) - start)
        return memory
