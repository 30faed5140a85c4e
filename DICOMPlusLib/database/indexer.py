"""Import files, folders and DICOMDIRs into the database: parallel, batched, cancellable.

Pipeline: walk the paths (sorted, so the first of two files with the same SOPInstanceUID is the
same every time) -> skip files whose size and mtime match the last import -> parse headers in
worker threads or processes (or in this thread for small imports), which also write each file to
a temporary name in the store -> commit batches of entries in one transaction each, moving files
into place just before the commit. Cancel is checked between chunks (each a few tens of
milliseconds), so it stops within a second and leaves only complete, committed records.

Which workers: a copying import spends most of its time in the kernel's copy
(``copy_file_range``), which releases the GIL, so threads overlap it with the header scans and
the commits on another core for no start-up, pickling or extra CPU (measured as processes on
1,008 CT files: 0.51 s of CPU with two threads or none, 0.75 s with two worker processes). Worker
processes are kept for what is all Python: scanning the headers of a large import that copies
nothing (``--link``, from :data:`LINK_PARALLEL_THRESHOLD` files). Below that, one forked scanner
beside the committing process was measured not to pay on a 2-core VM: each copy-on-write page
fault after the fork costs ~15-20 us there, and both processes take thousands (0.06-0.07 s of CPU
more than one thread, 1.16-1.22x the time at load 2.6-4.3). The commits run in the importing
thread: a committer thread beside the scans did not pay either (docs/performance.md, "Import").

``concurrent.futures`` is imported only when a pool is started, and ``multiprocessing`` only for a
process pool: a small import, or an import again of unchanged files, does not pay for them (nor
for the pickling and socket modules they pull in) in a command-line process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import CancelToken, ProgressCallback
from DICOMPlusLib.database.ingest import (
    POLICY,
    DuplicatePolicy,
    IngestSource,
    StoreStatus,
    full_path,
    is_space_error,
)
from DICOMPlusLib.database.store import TMP_PREFIX, copy_into
from DICOMPlusLib.database.walk import iter_files
from DICOMPlusLib.errors import CancelledError, DiskFullError, ImportFileError
from DICOMPlusLib.models import ImportReport, SkippedFile
from DICOMPlusLib.uninterrupted import uninterrupted

if TYPE_CHECKING:
    import concurrent.futures as cf
    import multiprocessing.context

    from DICOMPlusLib.database.backend import Backend
    from DICOMPlusLib.database.parsing import ParsedFile

logger = get_logger(__name__)

CHUNK = 48  # files per worker task
BATCH = 480  # entries per database transaction
#: From this many files to copy, worker threads copy beside the scans and commits (starting a
#: thread costs ~0.1 ms; a 512 KB file's copy by the kernel 0.2-1 ms, without the GIL).
PARALLEL_THRESHOLD = 2 * CHUNK
#: The same for an import that copies nothing (--link): a header scan costs ~0.1 ms a file, so
#: the pool (fork, pickling the results back: ~0.08 s of CPU) pays only for larger imports. Measured
#: as processes on 1,008 CT files and 2 cores: --jobs 1 0.26 s wall and 0.22 s CPU, --jobs 2
#: 0.31 s and 0.30 s, with another job on the machine (docs/performance.md, "Import").
LINK_PARALLEL_THRESHOLD = 2500


def _work(
    paths: list[str],
    link: bool,
    tmp_base: str,
    stop: Callable[[], bool] | None = None,
    out: list[ParsedFile | SkippedFile] | None = None,
) -> list[ParsedFile | SkippedFile]:
    """Worker body: parse each file's header and, when copying, copy it by the kernel into a
    temporary file of the store named ``<tmp_base>-<pid>-<n>``. ``stop()`` true (a cancel, an
    error; threads and the serial loop only) ends the chunk after the file under way: what it
    returns is complete, the rest is left for the next import. ``out``: the list to fill (the
    serial loop passes its own: a second Ctrl-C that ends the chunk early leaves the copies
    made so far in the caller's hands, which removes their temporaries)."""
    # The header scanner is imported by the first chunk to read, not with this module: an
    # import again of unchanged files reads none (~2 ms of a command line process).
    from DICOMPlusLib.database.parsing import parse_fd

    out = [] if out is None else out
    for path in paths:
        if stop is not None and stop():
            break
        # In the serial loop (the main thread) a second Ctrl-C waits for the file under way, so
        # that its copy is in ``out`` (raised between the copy and the append, it left the
        # temporary to nobody); in a worker thread this is a no-op.
        with uninterrupted:
            try:
                out.append(_import_one(path, link, tmp_base, parse_fd))
            except ImportFileError as exc:
                out.append(SkippedFile(path, str(exc)))
            except Exception as exc:  # a parser bug on one file must not lose the others
                logger.exception("unexpected error parsing %s", path)
                out.append(SkippedFile(path, f"unreadable: {type(exc).__name__}: {exc}"))
    return out


_names = itertools.count()
CHANGE_RETRIES = 3
#: The reason of a file whose copy found the store's disk full: the import stops there (every
#: later copy would fail too) and says so once, instead of once a file.
FULL_REASON = "cannot store: the disk is full"


class _Full(Exception):
    """Inside :func:`import_paths`: the store or the database has no room left."""


def _import_one(
    path: str, link: bool, tmp_base: str, parse_fd: Callable[[int, os.stat_result, str], ParsedFile]
) -> ParsedFile:
    """One file, read consistently: its identity, size and times are taken before and after
    the header is parsed and the copy made; a file rewritten meanwhile (a torn copy, a header
    from another version than the pixels) is tried again, then reported.

    Not detectable this way: an in-place overwrite of the same size by one write that was
    already running when the copy began (the kernel sets the mtime as a write starts)."""
    for _attempt in range(CHANGE_RETRIES):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ImportFileError(f"cannot read: {exc.strerror or exc}") from exc
        tmp = ""
        try:
            before = os.fstat(fd)
            try:
                parsed = parse_fd(fd, before, path)
            except ImportFileError:
                if _unchanged(before, os.stat(path)):
                    raise
                continue  # read while it was being written: look again
            if not link:
                tmp = f"{tmp_base}-{os.getpid()}-{next(_names)}"
                try:
                    copy_into(fd, before.st_size, tmp)
                except OSError as exc:
                    tmp = ""
                    if is_space_error(exc):
                        raise ImportFileError(f"{FULL_REASON} ({exc.strerror or exc})") from exc
                    if _unchanged(before, os.fstat(fd)):
                        raise ImportFileError(f"cannot store: {exc.strerror or exc}") from exc
                    continue
            # The path's stat is enough: with the same device and inode as ``before`` it is the
            # open file's, so an ``fstat`` of the descriptor would say the same (one call a file).
            if not _unchanged(before, os.stat(path)):
                continue
            parsed.stored_tmp, tmp = tmp, ""
            return parsed
        except OSError as exc:
            raise ImportFileError(f"cannot read: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    raise ImportFileError(
        f"changed while being read ({CHANGE_RETRIES} times): import it again once it is complete"
    )


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def _mp_context() -> multiprocessing.context.BaseContext:
    """fork is cheapest and safe while this process has one thread; otherwise forkserver."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def import_paths(
    db: Backend,
    paths: Iterable[str | os.PathLike],
    *,
    link: bool | None = None,
    jobs: int | None = None,
    processes: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_duplicate: DuplicatePolicy | str = POLICY[IngestSource.IMPORT],
    force: bool = False,
) -> ImportReport:
    """Import files and folders into ``db``.

    ``link`` indexes files where they are instead of copying them into the store (default:
    ``db.default_link``). ``jobs`` workers parse headers and copy (default: the CPU count):
    threads for a copying import, processes for a large ``link`` import (the module documentation
    says why); ``processes=False`` uses threads for that too (for hosts that cannot start
    processes, such as an embedded interpreter). ``force`` re-reads files even when size and
    mtime are unchanged.
    ``progress(done, total, current)`` is called from this thread. ``cancel`` stops the import
    between chunks; what was committed stays. Raises nothing for bad files: they are listed in
    ``report.skipped`` with a reason. Raises :class:`DiskFullError` when the store's disk or the
    database's fills: what was copied whole before is committed, nothing half-done is left, and
    the same import again (after freeing space) completes the job.
    """
    link = db.default_link if link is None else link
    cancel = cancel or CancelToken()
    started = time.monotonic()
    report = ImportReport()
    unreadable: list[SkippedFile] = []
    files = list(iter_files(paths, unreadable=unreadable))
    report.skipped.extend(unreadable)
    report.files_seen = len(files)
    total = len(files)
    done = 0
    if progress:
        progress(0, total, "")
    todo = files if force else _changed_files(db, files, report)
    done = total - len(todo)
    if progress and done:
        progress(done, total, "")
    tmp_base = ""  # claiming a writer token makes a lock file: only for files to copy
    if todo and not link:
        tmp_base = os.path.join(db.store.incoming_dir(), f"{TMP_PREFIX}{db.store.owner_token()}")
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    jobs = max(1, jobs or os.cpu_count() or 1)
    pending: list[ParsedFile] = []
    full: list[str] = []  # what is full, once a copy or a commit found no room

    def commit(batch: list[ParsedFile]) -> None:
        try:
            # the statuses only: no InstanceRecord a file (~3.5 us each) unless someone subscribed
            results = db.ingest.commit_batch(batch, DuplicatePolicy(on_duplicate), link=link, records=False)
        except Exception as exc:
            if not is_space_error(exc):
                raise
            full.append(full_path(db, exc))
            raise _Full from exc
        for item, result in zip(batch, results, strict=True):
            if result.status is StoreStatus.STORED:
                report.added += 1
            elif result.status is StoreStatus.REPLACED:
                report.replaced += 1
            else:
                report.duplicates += 1
                report.skipped.append(SkippedFile(item.source, "duplicate SOPInstanceUID (already stored)"))

    def flush() -> None:
        if pending:
            commit(pending)
            pending.clear()

    def consume(results: list[ParsedFile | SkippedFile]) -> None:
        nonlocal done
        for item in results:
            if isinstance(item, SkippedFile):
                if item.reason.startswith(FULL_REASON):
                    full.append(str(db.store.root))
                    continue
                report.skipped.append(item)
                _remember_skipped(db, item)
            else:
                pending.append(item)
        done += len(results)
        if full:
            raise _Full
        if len(pending) >= BATCH:
            flush()
        if progress and results:
            last = results[-1]
            progress(done, total, last.path if isinstance(last, SkippedFile) else last.source)

    executor: cf.Executor | None = None
    futures: list[cf.Future] = []  # submitted and not yet consumed
    halted = [False]  # set when the import ends early for any reason: the workers stop too

    def stop() -> bool:
        return halted[0] or cancel.cancelled

    if jobs > 1 and len(todo) >= (LINK_PARALLEL_THRESHOLD if link else PARALLEL_THRESHOLD):
        import concurrent.futures as cf

        if processes and link:
            # its worker processes cannot see ``stop``; they copy nothing (no temporary is left)
            executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=_mp_context())
            worker_stop = None
        else:
            executor = cf.ThreadPoolExecutor(max_workers=jobs)
            worker_stop = stop
    in_hand: list[ParsedFile | SkippedFile] = []  # the serial loop's chunk under way
    try:
        if executor is None:
            for chunk in chunks:
                if cancel.cancelled:
                    raise CancelledError("import cancelled")
                consume(_work(chunk, link, tmp_base, stop, in_hand))
                in_hand = []  # committed or in ``pending``; the next chunk fills a new list
        else:
            # The pool's own calls run ``uninterrupted``: a second Ctrl-C raised inside one left
            # a lock of the pool's held, and the import waiting for its workers forever.
            ahead = jobs * 3
            index = 0
            while index < len(chunks) or futures:
                while index < len(chunks) and len(futures) < ahead and not cancel.cancelled:
                    with uninterrupted:
                        futures.append(executor.submit(_work, chunks[index], link, tmp_base, worker_stop))
                    index += 1
                if cancel.cancelled:
                    raise CancelledError("import cancelled")
                while True:
                    try:
                        with uninterrupted:
                            results = futures[0].result(timeout=0.2)
                        break
                    except cf.TimeoutError:
                        if cancel.cancelled:
                            raise CancelledError("import cancelled") from None
                consume(results)  # its temporaries are in ``pending`` or committed: then forgotten
                futures.pop(0)
        flush()
    except CancelledError:
        report.cancelled = True
        flush()  # what was parsed completely is committed; nothing half-done is
    except _Full as exc:
        if exc.__cause__ is None:  # the store is full, not the database: commit what was copied
            with contextlib.suppress(_Full):
                flush()
        kept = report.added + report.replaced + report.unchanged
        raise DiskFullError(full[0], done=kept, total=report.files_seen, what="files") from exc.__cause__
    finally:
        halted[0] = True
        # uninterrupted too: the workers end the file under way (a second Ctrl-C waits that
        # long), then every temporary nobody will commit is removed (pending: an unexpected error)
        with uninterrupted:
            if executor is not None:
                _drain(executor, futures)
            _unlink_temporaries(pending)
            _unlink_temporaries(in_hand)
    report.seconds = time.monotonic() - started
    if progress:
        progress(done, total, "")
    return report


def _unlink_temporaries(items: Iterable[ParsedFile | SkippedFile]) -> None:
    """Remove the temporary copies of items that will not be committed (those moved into place
    by a commit are gone from their temporary names already; a skipped file has none)."""
    for item in items:
        if not isinstance(item, SkippedFile) and item.stored_tmp:
            with contextlib.suppress(OSError):
                os.unlink(item.stored_tmp)


def _drain(executor: cf.Executor, futures: list[cf.Future]) -> None:
    """Stop the workers of an import that ends (its chunks not started are cancelled, those
    under way end their file) and delete the temporary files of chunks nobody will commit."""
    for future in futures:
        future.cancel()
    executor.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if future.cancelled() or future.exception() is not None:
            continue
        _unlink_temporaries(future.result())


def _changed_files(db: Backend, files: list[str], report: ImportReport) -> list[str]:
    """Files whose (size, mtime) differ from the last import of the same path. An unchanged
    file skipped last time for what it is (not DICOM, a DICOMDIR) is reported skipped again
    with that reason, not as an unchanged instance."""
    conn = db._reader()
    if not files or conn.execute("SELECT 1 FROM sources LIMIT 1").fetchone() is None:
        return list(files)  # nothing was ever imported (a first import): no path to look up
    todo: list[str] = []
    folders: dict[str, str] = {}
    for start in range(0, len(files), 500):
        chunk = files[start : start + 500]
        absolute = [_absolute(f, folders) for f in chunk]
        known = {
            row[0]: (row[1], row[2], row[3])
            for row in conn.execute(
                "SELECT path, size, mtime, reason FROM sources"
                f" WHERE path IN ({','.join('?' * len(absolute))})",
                absolute,
            )
        }
        for original, path in zip(chunk, absolute, strict=True):
            seen = known.get(path)
            if seen is not None:
                try:
                    st = os.stat(path)
                except OSError:
                    todo.append(original)
                    continue
                if st.st_size == seen[0] and st.st_mtime == seen[1]:
                    if seen[2]:  # skipped last time for what it is: say so again, unread
                        report.skipped.append(SkippedFile(original, seen[2]))
                        report.duplicates += seen[2].startswith("duplicate")
                    else:
                        report.unchanged += 1
                    continue
            todo.append(original)
    return todo


def _absolute(path: str, folders: dict[str, str]) -> str:
    """``os.path.abspath(path)``, with its folder made absolute once in ``folders``: the walk gives
    the files of a folder under the same folder name, and a relative one costs a ``getcwd`` (a
    system call) a file (an import again of 10,080 files given relative: 18 -> 3 ms here)."""
    head, slash, name = path.rpartition("/")
    if os.sep != "/" or name in ("", ".", ".."):
        return os.path.abspath(path)
    folder = head + slash  # "" (the working folder), "/" or "a/b/"
    made = folders.get(folder)
    if made is None:
        made = folders[folder] = os.path.abspath(folder or ".")
    return f"{made}{name}" if made.endswith("/") else f"{made}/{name}"


def _remember_skipped(db: Backend, item: SkippedFile) -> None:
    """Files skipped for what they are (not DICOM, a DICOMDIR) are not read again next time;
    files skipped for a passing reason (cannot read, cannot store) are."""
    if item.reason.startswith(("cannot", "unreadable")):
        return
    try:
        st = os.stat(item.path)
    except OSError:
        return
    db.remember_source(item.path, st.st_size, st.st_mtime, item.reason)
