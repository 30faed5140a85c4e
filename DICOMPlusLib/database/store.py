"""The managed file store: where imported and received files live.

File names never come from UIDs or from the sender: a file's name is a hash of its
SOPInstanceUID, under two levels of fan-out folders, so a hostile UID such as ``../../x`` cannot
leave the store and no folder grows too large. Files are written to a temporary name in the
store and linked into place (atomic on POSIX), so a crash never leaves a half-written file
under a final name.

Placed files (:meth:`FileStore.place`): the temporary name stays, a second link of the file,
until the transaction that adds its row has committed (the caller then calls
:meth:`FileStore.settled`). A writer killed in between leaves a temporary file with two links:
the sweep hands it to the database (``settle``), which removes the file under its name when no
row points there (the commit never came), so no stored file outlives a transaction that did not
commit, and a new instance's file does not stay without its row until it is stored again.

Temporary files and crashes: every writer (a :class:`FileStore` that creates a temporary file)
first claims an owner token and holds an exclusive ``flock`` on ``.writer-<token>.lock`` for as
long as it lives; its temporary files are named ``.incoming-<token>-...``. The kernel drops the
lock when the process dies, however it dies, so :meth:`FileStore.sweep` (run on every open of the
database) removes exactly the temporary files whose writer is gone, at once, and never one that a
running writer (this process or another) still owns.

Retired files: a stored file that a transaction replaces or deletes leaves its name inside that
transaction (:meth:`FileStore.retire`) for a temporary name that carries the name it had
(``.incoming-<token>-...~retired~<hh>%2F<name>.dcm``). A writer killed before its COMMIT leaves
rows that still point to that name; so the sweep does not remove a dead writer's retired file
by itself: it hands them to the database (``settle``), which knows whether a row still points
to the name and puts the file back (:meth:`FileStore.reinstate`) or removes it.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from DICOMPlusLib.errors import DatabaseError

try:
    import fcntl
except ImportError:  # Windows: no flock; the sweep then only removes old files
    fcntl = None  # type: ignore[assignment]

TMP_PREFIX = ".incoming-"
LOCK_PREFIX = ".writer-"
INCOMING_DIR = ".incoming"
#: Between a retired file's temporary name and the name it had (``/`` as ``%2F``).
RETIRED_MARK = "~retired~"
#: Temporary files without an owner token (written by DICOMPlus before tokens existed) are
#: removed once they have not changed for this long.
UNOWNED_AGE_S = 600.0
#: A writer's token (:meth:`FileStore.owner_token`); compiled by ``re`` when a sweep first meets a
#: temporary file, not as every command imports this module (~0.5 ms).
_TOKEN = r"^\d+x[0-9a-f]{8}$"
_FICLONE = 0x40049409  # ioctl(dst, FICLONE, src): share the source's blocks (btrfs, XFS)
_COPY_CHUNK = 1 << 30

#: What :meth:`FileStore.sweep` hands a dead writer's files to: (retired files as (temporary
#: name, the name it had), placed files' in-flight names); what it returns is not used.
Settle = Callable[[list[tuple[str, str]], list[str]], object]


def _sha256_hex(data: bytes) -> str:
    """SHA-256 of a stored file's name without OpenSSL: ``hashlib`` loads libcrypto (~4 ms, paid
    by the first received file of every retrieve or listener process) where CPython's own module
    (``_sha2`` from 3.12, ``_sha256`` before) gives the same digest; ``hashlib`` where a build has
    neither."""
    global _sha256
    sha256 = _sha256
    if sha256 is None:
        for module in ("_sha2", "_sha256", "hashlib"):
            with contextlib.suppress(ImportError, AttributeError):
                sha256 = _sha256 = importlib.import_module(module).sha256
                break
    assert sha256 is not None  # hashlib always has it
    return sha256(data).hexdigest()


_sha256: Callable | None = None


class FileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._token = ""
        self._token_pid = 0
        self._lock_fd = -1
        self._counter = itertools.count()

    def relative_path_for(self, sop_instance_uid: str, *, unique: bool = False) -> str:
        """``hh/<sha256>.dcm``; ``unique`` adds a random suffix (for a replacement written while
        the instance's current file must stay valid until the database commit)."""
        digest = _sha256_hex(sop_instance_uid.encode("utf-8", "surrogateescape"))
        suffix = f"-{os.urandom(4).hex()}" if unique else ""
        return f"{digest[:2]}/{digest}{suffix}.dcm"

    def path_for(self, sop_instance_uid: str, *, unique: bool = False) -> Path:
        return self.root / self.relative_path_for(sop_instance_uid, unique=unique)

    def contains(self, path: str | Path) -> bool:
        """True when ``path`` resolves to a place inside the store."""
        try:
            Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True

    # -- temporary files -----------------------------------------------------------------------
    def owner_token(self) -> str:
        """This writer's token, claimed (and its lock taken) on first use."""
        with self._lock:
            if not self._token:
                self._claim()
            return self._token

    def check_writable(self) -> None:
        """Raise DatabaseError unless files can be written into the store (it makes the folder
        and this writer's lock file): a read-only or mistyped store (a file, a read-only mount)
        was an OSError from deep inside an import or a retrieve."""
        try:
            self.owner_token()
        except OSError as exc:
            why = "it is a file, not a folder" if self.root.is_file() else exc.strerror or str(exc)
            raise DatabaseError(f"cannot write into the store {self.root}: {why}") from None

    def _claim(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            token = f"{os.getpid()}x{os.urandom(4).hex()}"
            lock_path = self.root / f"{LOCK_PREFIX}{token}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            if fcntl is None:
                break
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a sweeper may have taken the fresh file for a dead writer's and removed it
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._token, self._token_pid, self._lock_fd = token, os.getpid(), fd

    def temporary_name(self, folder: Path | None = None) -> str:
        """A fresh temporary path (not created) owned by this writer, in ``folder`` (default: the
        store's root; the same file system, so ``os.replace`` into place is atomic)."""
        token = self.owner_token()
        return os.path.join(folder or self.root, f"{TMP_PREFIX}{token}-{os.getpid()}-{next(self._counter)}")

    def incoming_dir(self) -> Path:
        """The folder import workers write their temporary files in."""
        folder = self.root / INCOMING_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def temporary_file(self) -> tuple[int, str]:
        """A new temporary file inside the store, opened for reading and writing (the ingest
        parses a received file's header from the descriptor it wrote it with): (fd, path).

        The store's root is made by the writer's claim (:meth:`owner_token`), once: not one
        ``mkdir`` (failing with EEXIST) per received file."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        path = self.temporary_name()
        try:
            return os.open(path, flags, 0o600), path
        except FileNotFoundError:  # the root was removed while this writer lived
            self.release()  # its lock file went with it: claim anew (which makes the root)
            path = self.temporary_name()
            return os.open(path, flags, 0o600), path

    def sweep(self, settle: Settle | None = None) -> int:
        """Remove the temporary files of writers that are gone; return how many were removed.

        A dead writer's retired files (:meth:`retire`) go to ``settle`` as (temporary name,
        the name it had), which puts each back (:meth:`reinstate`) or removes it
        (:meth:`discard`): only the database knows whether a row still points to that name (its
        writer was killed before the commit). Its placed files (:meth:`place`: a temporary
        file with a second link) go to ``settle`` too, which removes the stored link when no row
        points to it. Without ``settle`` they stay for a sweep that has one."""
        removed = 0
        alive: dict[str, bool] = {}
        retired: list[tuple[str, str]] = []
        placed: list[str] = []
        now = time.time()
        for folder in (self.root, self.root / INCOMING_DIR):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if not entry.name.startswith(TMP_PREFIX):
                    continue
                token = entry.name[len(TMP_PREFIX) :].split("-", 1)[0]
                with contextlib.suppress(OSError):
                    if re.match(_TOKEN, token):
                        if token not in alive:
                            alive[token] = self._writer_alive(token)
                        if alive[token]:
                            continue
                    elif now - entry.stat(follow_symlinks=False).st_mtime < UNOWNED_AGE_S:
                        continue
                    name = self._retired_name(entry.name)
                    if name is not None:
                        retired.append((entry.path, name))
                        continue
                    if entry.stat(follow_symlinks=False).st_nlink > 1:
                        placed.append(entry.path)
                        continue
                    os.unlink(entry.path)
                    removed += 1
        if (retired or placed) and settle is not None:
            settle(retired, placed)
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):  # locks of writers that died without temporaries
                if entry.name.startswith(LOCK_PREFIX) and entry.name.endswith(".lock"):
                    token = entry.name[len(LOCK_PREFIX) : -len(".lock")]
                    if token not in alive:
                        self._writer_alive(token)
        return removed

    def _writer_alive(self, token: str) -> bool:
        """Whether the writer owning ``token`` still holds its lock (a dead one's lock is removed)."""
        if token == self._token:
            return True
        lock_path = self.root / f"{LOCK_PREFIX}{token}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            if fcntl is None:
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return True
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give up this writer's token (its leftover temporaries, if any, go with the next sweep)."""
        with self._lock:
            if not self._token or self._token_pid != os.getpid():
                return
            with contextlib.suppress(OSError):
                os.unlink(self.root / f"{LOCK_PREFIX}{self._token}.lock")
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._token, self._lock_fd = "", -1

    # -- writing ---------------------------------------------------------------------------------
    def write_bytes(
        self, sop_instance_uid: str, data: bytes | memoryview, *, unique: bool = False
    ) -> tuple[Path, str | None]:
        """Write ``data`` to a temporary file and :meth:`place` it; return what ``place`` does.

        Raises OSError (e.g. ENOSPC) with no partial file left behind.
        """
        fd, tmp = self.temporary_file()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self.place(sop_instance_uid, tmp, unique=unique)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def place(self, sop_instance_uid: str, tmp_path: str, *, unique: bool = False) -> tuple[Path, str | None]:
        """Link a finished temporary file of this writer into its final place, inside the
        transaction that adds its row; return (final path, in-flight name).

        The in-flight name is the temporary name, kept as a second link until the caller's
        commit: :meth:`settled` removes it then (and on a rollback the caller removes both).
        A writer killed before that leaves it for the sweep, which tells the database to remove
        the stored link unless a row points to it. A file already under a new instance's name is
        an orphan (no row points to it: the caller holds the instance's lock) and is replaced.
        Where the file system has no hard links, the file is renamed into place and the in-flight
        name is None (a killed writer's file then stays until the instance is stored again)."""
        final = self.path_for(sop_instance_uid, unique=unique)
        for _ in range(3):
            try:
                os.link(tmp_path, final)
                return final, tmp_path
            except FileNotFoundError:  # the fan-out folder is made when the link says it is missing
                if not os.path.exists(tmp_path):
                    raise
                final.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(final)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                break
        os.replace(tmp_path, final)
        return final, None

    def settled(self, in_flight: str | None) -> None:
        """Remove a placed file's in-flight name (:meth:`place`): its row has committed, or the
        caller removed the placed file after a rollback."""
        if in_flight:
            with contextlib.suppress(OSError):
                os.unlink(in_flight)

    def names_of(self, sop_instance_uid: str) -> list[Path]:
        """Every stored name of the instance: ``hh/<hash>.dcm`` and replacements'
        ``hh/<hash>-<suffix>.dcm`` (:meth:`relative_path_for`), whichever exist."""
        plain = self.path_for(sop_instance_uid)
        return list(plain.parent.glob(f"{plain.stem}*.dcm"))

    def unsettled_names(self, in_flight: str, sop_instance_uid: str) -> list[str]:
        """The stored names of a dead writer's placed file (:meth:`place`) for the instance:
        those of :meth:`names_of` that are the same file."""
        found = []
        for path in self.names_of(sop_instance_uid):
            with contextlib.suppress(OSError):
                if os.path.samefile(path, in_flight):
                    found.append(str(path))
        return found

    def remove(self, path: str | Path) -> bool:
        """Delete a stored file.

        Its fan-out folder stays, even empty: there are at most 256 of them, and the next
        instance stored under it would make it again, in series with its C-STORE response (a
        ``mkdir`` was 0.1-1 ms of a received file's path on a loaded machine, ~180 of them for a
        300-file study retrieved again after a delete)."""
        path = Path(path)
        if not self.contains(path):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def retire(self, path: str | Path) -> str | None:
        """Move a stored file out of its name, to a temporary name of this writer, while the
        database transaction that drops its row still holds its locks: once that commits, another
        writer may store the same instance under the same name, and removing it by that name
        then would remove the new file. Returns the temporary name (None: the file is gone).
        :meth:`discard` removes it after the commit; :meth:`restore` puts it back otherwise;
        a writer killed in between leaves it to :meth:`sweep`, which finds in the temporary name
        the name it had (a name outside the store's fan-out folders is not carried: such a file
        is removed as any temporary)."""
        tmp = self.temporary_name()
        relative = os.path.relpath(path, self.root)
        if relative.count("/") == 1 and not relative.startswith("."):
            tmp += RETIRED_MARK + relative.replace("%", "%25").replace("/", "%2F")
        try:
            os.replace(path, tmp)
        except FileNotFoundError:
            return None
        return tmp

    def restore(self, tmp: str, path: str | Path) -> None:
        """Put a retired file back under its name (its transaction did not commit)."""
        with contextlib.suppress(OSError):
            os.replace(tmp, path)

    def _retired_name(self, temporary: str) -> str | None:
        """The stored name a retired file had (None: not a retired file)."""
        _, mark, relative = temporary.partition(RETIRED_MARK)
        if not mark:
            return None
        relative = relative.replace("%2F", "/").replace("%25", "%")
        if relative.count("/") != 1 or relative.startswith(".") or "\0" in relative:
            return None
        return str(self.root / relative)

    def reinstate(self, tmp: str, path: str | Path) -> bool:
        """Put a dead writer's retired file back under its name when that name is free (a row
        still points to it: its transaction never committed); else remove it (the name holds
        the file stored anew since). The link cannot replace a file that appears meanwhile."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            self.discard(tmp, path)
            return False
        except OSError as exc:  # a file system without hard links
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK) or os.path.lexists(path):
                raise
            os.replace(tmp, path)
            return True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return True

    def discard(self, tmp: str, path: str | Path) -> None:
        """Remove a retired file (its fan-out folder stays, as with :meth:`remove`)."""
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def create_owner_only(path: Path) -> None:
    """The database holds every header (patient data): create it readable by its owner only.

    SQLite gives the WAL and shared-memory files the mode of the database file, so they follow.
    An existing database that anyone may read (as earlier versions created it, 0644) is tightened
    too, when this user owns it; one shared with a group only (e.g. 0660) was set so on purpose
    and is left alone.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if st.st_mode & 0o007 and st.st_uid == os.geteuid():
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(f"{path}{suffix}", 0o600)
        return
    except OSError:
        return  # a read-only folder: sqlite3 reports it with the path
    os.close(fd)


def sync_path(path: str | os.PathLike, *, data_only: bool = False) -> None:
    """Put what the kernel holds of ``path`` (a file, or a folder's entries) on the disk:
    ``fsync``, or ``fdatasync`` with ``data_only``. OSError as the system calls raise it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def copy_into(src_fd: int, size: int, tmp_path: str) -> None:
    """Copy the first ``size`` bytes of an open file into a new file ``tmp_path`` (owner-only),
    by the kernel: a reflink where the file system shares blocks (btrfs, XFS), else
    ``copy_file_range`` or ``sendfile``; the bytes never pass through Python. Raises OSError,
    with nothing left behind, also when the source is shorter than ``size`` (it changed)."""
    dst = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        copied = _kernel_copy(src_fd, dst, size)
        if copied != size:
            raise OSError(errno.EIO, f"the file changed while being copied ({copied} of {size} bytes)")
    except BaseException:
        os.close(dst)
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    os.close(dst)


_reflink = [fcntl is not None]  # until a file system says it cannot


def _kernel_copy(src: int, dst: int, size: int) -> int:
    """Copy ``size`` bytes from offset 0 of ``src`` to ``dst``; return the bytes copied."""
    if _reflink[0] and size:
        try:
            fcntl.ioctl(dst, _FICLONE, src)
            return min(os.fstat(dst).st_size, size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
                _reflink[0] = False  # this file system never will; stop asking
    done = 0
    copy_range = getattr(os, "copy_file_range", None)
    while done < size and copy_range is not None:
        try:
            n = copy_range(src, dst, min(size - done, _COPY_CHUNK), done, done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or done:
                raise
            copy_range = None
            break
        if n == 0:
            return done
        done += n
    if done >= size:
        return done
    while done < size:  # sendfile, then plain reads and writes
        try:
            n = os.sendfile(dst, src, done, min(size - done, _COPY_CHUNK))
        except OSError:
            break
        if n == 0:
            return done
        done += n
    if done >= size:
        return done
    os.lseek(dst, done, os.SEEK_SET)
    while done < size:
        chunk = os.pread(src, min(size - done, 1 << 20), done)
        if not chunk:
            break
        os.write(dst, chunk)
        done += len(chunk)
    return done
