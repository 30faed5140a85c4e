"""The parts of DICOMPlusLogic that need no MRML: the database it reads (DatabaseLogic) and the
engine side (EngineLogic): packages on demand, import, the network, the listener.

DICOMPlusLogic (DICOMPlus.py) inherits both mixins and adds what touches the scene. Long work is handed
to the DICOMPlus engine process (:mod:`.engine`) and returns a job at once
(:class:`DICOMPlusLib.engine.protocol.RemoteJob`: ``job.get()`` waits for the result; the panel
shows the job in its activity list instead). Packages stock Slicer does not bundle are installed
on first use with Slicer's ``pip_ensure``, which asks the user: the network's (pynetdicom), and
the pixel decoders a series needs (GDCM, pylibjpeg), from Resources/requirements-<purpose>.txt.
"""

import os
import queue

import qt
import slicer
from slicer.i18n import tr as _

from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, DEFAULT_PORT

from . import engine as _engine
from . import text as T
from .signals import Signal


class DatabaseLogic:
    """Mixin for DICOMPlusLogic: which database (argument, setting, default), reads and delete.
    The host sets ``_databasePath`` and ``_database`` and emits ``databaseAboutToClose``."""

    # -- database ---------------------------------------------------------------------------
    def databasePath(self):
        """Which database: the path or URL given, else the ``DICOMPlus/DatabaseURL`` setting (a
        ``postgresql://`` URL: a shared index), else the ``DICOMPlus/DatabasePath`` setting (an
        SQLite file), else a test database in testing mode, else DICOMPlusLib's default
        (``$DICOMPLUS_DB`` or ~/.local/share/dicomplus). The engine takes it as it is."""
        settings = qt.QSettings()
        configured = (
            self._databasePath
            or settings.value("DICOMPlus/DatabaseURL", "")
            or settings.value("DICOMPlus/DatabasePath", "")
        )
        if configured:
            return str(configured)
        if slicer.app.testingEnabled():  # tests never touch the user's database
            return os.path.join(slicer.app.temporaryPath, "DICOMPlusTestDatabase", "dicomplus.sqlite")
        from DICOMPlusLib.database import default_database_path
        from DICOMPlusLib.database.backends import is_url

        if is_url(os.environ.get("DICOMPLUS_DB")):  # as dicomplus takes it (a path would mangle it)
            return os.environ["DICOMPLUS_DB"]
        return str(default_database_path())

    def storePath(self):
        """The file store of a PostgreSQL database (``DICOMPlus/StorePath``: a folder every
        workstation reaches at the same path), needed only while the database records none;
        None when not set, and for an SQLite file, whose files go to ``store/`` beside it: the
        setting stays when a path replaces the URL, and the files of the SQLite database must not
        land in the shared PostgreSQL store."""
        from DICOMPlusLib.database.backends import is_url

        if not is_url(self.databasePath()):
            return None
        return str(qt.QSettings().value("DICOMPlus/StorePath", "") or "") or None

    def setDatabasePath(self, path, store=None):
        """Use another database (closes the current one); remembered in the settings: a
        ``postgresql://`` URL as ``DICOMPlus/DatabaseURL`` (with ``store`` as
        ``DICOMPlus/StorePath``), a path as ``DICOMPlus/DatabasePath``."""
        from DICOMPlusLib.database.backends import is_url

        self.closeDatabase()
        self._databasePath = str(path)
        settings = qt.QSettings()
        if is_url(str(path)):
            settings.setValue("DICOMPlus/DatabaseURL", str(path))
            if store is not None:
                settings.setValue("DICOMPlus/StorePath", str(store))
        else:
            settings.remove("DICOMPlus/DatabaseURL")  # else it would win over the path next time
            settings.setValue("DICOMPlus/DatabasePath", str(path))

    def databaseArgs(self):
        """How the engine's operations name this database: ``db`` (path or URL) and ``store``."""
        args = {"db": self.databasePath()}
        if self.storePath() is not None:
            args["store"] = self.storePath()
        return args

    @property
    def database(self):
        """The open DICOMPlusLib database, for reads (opened on first use). A ``postgresql://``
        URL needs psycopg: Resources/requirements-postgresql.txt is installed first (pip_ensure
        asks the user)."""
        if self._database is None:
            from DICOMPlusLib.database.backends import is_url, open_database

            target = self.databasePath()
            if is_url(target):
                self.ensurePackages("postgresql")
            self._database = open_database(target, store=self.storePath())
        return self._database

    def closeDatabase(self):
        """Close the database (the next use opens it again); ``databaseAboutToClose`` first.

        The listener stores into this database: it is stopped first, and its stop (associations
        under way get up to 10 s) is waited for with the event loop turning, so Slicer stays live
        and the stop's Cancel in the Activity list ends it at once (a listener still starting is
        cancelled, and stopped if it came up all the same). A switch of database
        (:meth:`setDatabasePath`) thus never leaves the listener storing into the old database
        while the panel reads the new one."""
        job = self.stopListener()
        while job is not None:  # a start whose cancel came too late is then stopped: wait for that too
            self.waitForJob(job)
            job = self.stopListener()
        self._closeDatabase()

    def _closeDatabase(self):
        if self._database is not None:
            self.databaseAboutToClose.emit()
            self._database.close()
            self._database = None

    def close(self):
        """Cancel this logic's running jobs (not other panels' on the shared engine), stop the
        listener at once (associations under way are aborted: the logic is going away, as when
        Slicer closes, and a sender sends them again as after any abort) and close its database
        (the engine stays). Nothing is waited for: the engine aborts the associations on its own
        threads, and its database connection is not this one."""
        for job in list(self._jobs):
            job.cancel()
        self.stopListener(atOnce=True)
        self._closeDatabase()

    def search(self, level="study", criteria=None, text=None, limit=None):
        """Search the local database with DICOM matching; returns frozen records."""
        return self.database.search(level, criteria or {}, text=text, limit=limit)

    def studyOf(self, entries):
        """The study of the first study or series in [(level, key)], else None."""
        for level, key in entries:
            if level == "study":
                return key
            if level == "series":
                found = self.search("series", {"SeriesInstanceUID": key})
                if found:
                    return found[0].StudyInstanceUID
        return None

    def delete(self, patient=None, study=None, series=None, files=True):
        """Delete a patient (PatientID), study or series, and the files DICOMPlus copied."""
        return self.database.delete(patient=patient, study=study, series=series, files=files)


class EngineLogic:
    """Mixin for DICOMPlusLogic; call :meth:`_initEngineLogic` from its constructor. The host
    provides ``databasePath()`` and ``database``."""

    def _initEngineLogic(self, nodesPath=None):
        self._nodesPath = nodesPath
        self._readyPurposes = set()
        self._declinedDecoders = set()
        self._jobs = []  # what this logic started in the engine and has not seen end
        self._listenerPort = 0
        self._listenerStart = None  # the running start's job (listenerStarting)
        self._stopWhenStarted = None  # a stop asked for while it started: its atOnce
        self._listenerStop = None  # the running stop's job (listenerStopping)
        self.aeTitle = DEFAULT_AE_TITLE  # our calling AE title (and the listener's by default)
        self.autoLoad = False
        self.completedSeries = []  # SeriesComplete events of the listener
        self.autoLoadQueue = queue.Queue()  # series UIDs to load, drained by the network widget
        self.listenerStopped = Signal(str, name="listenerStopped")
        # a stop of the listener began (its RemoteJob): the panel shows it, whoever asked for it
        self.listenerStopStarted = Signal(object, name="listenerStopStarted")
        self.engine = _engine.engine()
        self.engine.subscribe("series_complete", self._onSeriesComplete)
        self.engine.exited.connect(self._onEngineExited)

    def submit(self, op, args, name):
        """Start ``op`` in the engine for this logic; :meth:`close` cancels it if still running."""
        job = self.engine.submit(op, args, name)
        self._jobs.append(job)
        job.on_finished(self._jobs.remove)
        return job

    # -- packages ---------------------------------------------------------------------------
    def ensurePackages(self, purpose, names=None):
        """Install the packages of Resources/requirements-<purpose>.txt that are missing (only
        those of ``names`` when given) with Slicer's pip_ensure, which asks the user first."""
        if names is None and purpose in self._readyPurposes:
            return
        path = self.requirementsPath(purpose)
        if path is not None:
            import slicer.packaging

            requirements = slicer.packaging.load_requirements(path)
            if names is not None:
                requirements = [r for r in requirements if r.name in set(names)]
            if requirements:
                slicer.packaging.pip_ensure(requirements, requester="DICOMPlus")
        if names is None:
            self._readyPurposes.add(purpose)

    def requirementsPath(self, purpose):
        """Resources/requirements-<purpose>.txt of the installed module or of a source tree."""
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for folder in (os.path.join(here, "Resources"), os.path.join(os.path.dirname(here), "Resources")):
            path = os.path.join(folder, f"requirements-{purpose}.txt")
            if os.path.isfile(path):
                return path
        return None

    def ensureDecoders(self, seriesUIDs, ask=True):
        """Make sure the pixel decoders these series need (GDCM, pylibjpeg...) are installed.
        ``ask=True`` (loading) offers to install them (``pip_ensure`` asks the user, raises if
        declined); ``ask="once"`` (the preview) does not ask again for what was declined in this
        session; ``ask=False`` (thumbnails, while browsing) never asks. Returns False when a
        decoder is missing and nothing was asked."""
        from DICOMPlusLib.loading.decoders import missing_decoders

        syntaxes = {r.TransferSyntaxUID for uid in seriesUIDs for r in self.database.instances(uid)}
        missing = missing_decoders(syntaxes)
        if not missing:
            return True
        if not ask or (ask == "once" and set(missing) & self._declinedDecoders):
            return False
        try:
            self.ensurePackages("decoders", missing)
        except Exception:
            self._declinedDecoders.update(missing)
            raise
        return True

    # -- import ----------------------------------------------------------------------------
    def importFolder(self, paths, link=False):
        """Import files or folders in the engine; returns the job (result: ImportReport)."""
        paths = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        name = _("Import {items}").format(items=T.count(len(paths), _("item"), _("items")))
        return self.submit("import", {**self.databaseArgs(), "paths": paths, "link": link}, name)

    def deleteEntries(self, entries, files=True):
        """Delete [(level, key)] (as the browser's selectedEntries) in the engine, with the files
        DICOMPlus copied; returns the job (result: a DeleteReport per entry). ``delete`` does
        the same and waits."""
        entries = [(str(level), str(key)) for level, key in entries]
        name = _("Delete {items}").format(items=T.count(len(entries), _("item"), _("items")))
        return self.submit("delete", {**self.databaseArgs(), "entries": entries, "files": files}, name)

    # -- network ------------------------------------------------------------------------------
    def ensureNetworkDependencies(self):
        """Install what the network needs (pynetdicom) on first use; Slicer asks the user."""
        self.ensurePackages("network")

    def nodesPath(self):
        """The server node file: the path given, else ``$DICOMPLUS_NODES`` or the default."""
        from DICOMPlusLib.network.nodes import default_nodes_path

        return str(self._nodesPath or default_nodes_path())

    def nodeStore(self):
        from DICOMPlusLib.network.nodes import NodeStore

        return NodeStore(self.nodesPath())

    def nodes(self):
        return self.nodeStore().list()

    def node(self, nodeName):
        """A configured node by name, or ``AE@HOST:PORT``."""
        return self.nodeStore().resolve(nodeName)

    def addNode(self, name, aeTitle, host, port, retrieveMethod="C-GET", dicomwebURL="", replace=True):
        """Add (or with ``replace`` update) a server node reached by DIMSE at ``aeTitle@host:port``
        (and by DICOMweb at ``dicomwebURL`` when given); returns the RemoteNode."""
        from DICOMPlusLib.network.nodes import DicomwebEndpoint, DimseEndpoint, RemoteNode

        web = DicomwebEndpoint(str(dicomwebURL)) if dicomwebURL else None
        node = RemoteNode(str(name), DimseEndpoint(str(aeTitle), str(host), int(port)), web,
                          retrieve_method=retrieveMethod)  # fmt: skip
        return self.nodeStore().add(node, replace_existing=replace)

    def addDicomwebNode(self, name, url, user="", password="", token="", replace=True):
        """Add (or with ``replace`` update) a node reached by DICOMweb only: echo is a QIDO-RS
        probe, query QIDO-RS, send STOW-RS, retrieve WADO-RS. Returns the RemoteNode."""
        from DICOMPlusLib.network.nodes import RemoteNode

        node = RemoteNode.dicomweb(str(name), str(url), token=token, user=user, password=password)
        return self.nodeStore().add(node, replace_existing=replace)

    def removeNode(self, name):
        return self.nodeStore().remove(name)

    def _network(self, op, nodeName, name, **args):
        self.ensureNetworkDependencies()
        node = self.node(nodeName)
        args.update(node=node, calling_ae_title=self.aeTitle)
        return self.submit(op, args, name.format(node=node.name))

    def echo(self, nodeName, timeout=10.0):
        """Echo the node in the engine (C-ECHO, PS3.7 9.1.5, or a QIDO-RS probe for a DICOMweb
        node); the job's result is an EchoResult."""
        return self._network("echo", nodeName, _("Echo {node}"), timeout=timeout)

    def query(self, nodeName, level="study", criteria=None, limit=None):
        """C-FIND (or QIDO-RS) in the engine; the job's result is a list of records."""
        return self._network(
            "query", nodeName, _("Query {node}"), level=level, criteria=criteria or {}, limit=limit
        )

    def retrieve(self, nodeName, studyUID=None, seriesUIDs=(), method=None):
        """Retrieve a study or series into the local database (C-GET, C-MOVE to the listener,
        DICOMweb; None: the node's own). The job's result is a RetrieveReport."""
        seriesUIDs = [seriesUIDs] if isinstance(seriesUIDs, str) else list(seriesUIDs)
        what = _("{count} series").format(count=len(seriesUIDs)) if seriesUIDs else _("a study")
        return self._network("retrieve", nodeName, _("Retrieve {what} from {{node}}").format(what=what),
                             **self.databaseArgs(), study=studyUID, series=seriesUIDs, method=method)  # fmt: skip

    def send(self, nodeName, study=None, series=None):
        """Send a local study (UID or list) and/or series (UID or list) as one job, by C-STORE or
        STOW-RS as the node is reached (SendReport)."""
        studies = [study] if isinstance(study, str) else list(study or ())
        seriesList = [series] if isinstance(series, str) else list(series or ())
        return self._network("send", nodeName, _("Send to {node}"), **self.databaseArgs(),
                             studies=studies, series=seriesList)  # fmt: skip

    def startListener(self, port=DEFAULT_PORT, aeTitle=DEFAULT_AE_TITLE, autoLoad=False, host=""):
        """Start the C-STORE listener (in the engine) into the local database; returns the
        start's job at once (its result: the bound port; ``job.get()`` waits for it). The engine
        opens the database first, which takes seconds on a PostgreSQL server far away or a slow
        disk: Slicer's main thread does not wait for it (:meth:`listenerStarting` meanwhile, then
        :meth:`listenerRunning`). A port in use, or any other failure, is the job's error.
        ``DICOMPlus/ListenerRequireCalledAE`` (default off, as DCMTK and Orthanc) rejects
        associations addressed to another AE title. Completed series go to ``completedSeries``
        and, with ``autoLoad``, to ``autoLoadQueue`` for the widget to load. Refused
        (NetworkError) while the previous listener's stop runs (:meth:`listenerStopping`: it
        still holds the port and may still store into its database) or while a start runs."""
        if self._listenerStop is not None:  # refused: the port and the database are still its
            raise NetworkError(
                _(
                    "The listener is still stopping (transfers under way are finishing): start it "
                    "again once it has stopped, or Cancel its stop in the Activity list to end it now."
                )
            )
        if self._listenerStart is not None:
            raise NetworkError(
                _("The listener is already starting: wait for it, or Cancel its start in the Activity list.")
            )
        self.ensureNetworkDependencies()
        from DICOMPlusLib.network.listener import ListenerConfig

        self.autoLoad = bool(autoLoad)
        requireCalledAE = (
            str(qt.QSettings().value("DICOMPlus/ListenerRequireCalledAE", "false")).lower() == "true"
        )
        config = ListenerConfig(
            ae_title=aeTitle, port=int(port), host=host, require_called_ae=requireCalledAE
        )
        self._listenerPort = 0  # the engine replaces a listener it runs
        name = _("Start the listener on port {port}").format(port=int(port))
        job = self.submit("listen", {**self.databaseArgs(), "config": config}, name)
        self._listenerStart, self._stopWhenStarted = job, None
        job.on_finished(self._onListenerStartEnded)
        return job

    def _onListenerStartEnded(self, job):
        if self._listenerStart is not job:
            return
        self._listenerStart = None
        stop, self._stopWhenStarted = self._stopWhenStarted, None
        if job.error is None:
            self._listenerPort = int(job.result)
            if stop is not None:  # stopped while it started, and its cancel came too late
                self.stopListener(atOnce=stop)

    def _onSeriesComplete(self, data):
        self.completedSeries.append(data)
        if self.autoLoad and self.autoLoadQueue is not None:
            self.autoLoadQueue.put(data.series_instance_uid)

    def _onEngineExited(self, reason):
        if self._listenerPort:
            self._listenerPort = 0
            self.listenerStopped.emit(reason)

    def stopListener(self, atOnce=False):
        """Stop the listener; returns the stop's job at once (None when no listener runs or
        stops). The listener stops accepting at once; the associations under way get up to
        ``STOP_GRACE`` (10 s) to finish, and a cancel of the job (or ``atOnce``) aborts them
        (A-ABORT; their partial instances are not kept). ``listenerStopStarted(job)`` is emitted
        (the panel shows the job in its Activity list, whoever stopped the listener);
        ``job.get()`` waits for it (console, tests). Called again while the stop runs, it returns
        the same job (``atOnce`` cancels it). Called while the listener starts, it cancels the
        start and returns the start's job; should the listener come up all the same (the cancel
        reached the engine after it had started), it is stopped then, with ``atOnce`` as asked
        (call again for that stop's job)."""
        if self._listenerStart is not None:  # still starting: cancelled, or stopped once up
            self._stopWhenStarted = bool(atOnce or self._stopWhenStarted)
            self._listenerStart.cancel()
            return self._listenerStart
        job = self._listenerStop
        if self._listenerPort:
            port, self._listenerPort = self._listenerPort, 0
            if not self.engine.running():  # the engine is gone (Slicer quitting), its listener too
                return None
            job = self.submit("unlisten", {}, _("Stop the listener on port {port}").format(port=port))
            self._listenerStop = job
            job.on_finished(self._onListenerStopEnded)
            job = self._listenerStop  # None if it could not even be sent (it ended at once)
            if job is not None:
                self.listenerStopStarted.emit(job)
        if job is not None and atOnce:
            job.cancel()
        return job

    def _onListenerStopEnded(self, job):
        if self._listenerStop is job:
            self._listenerStop = None

    def waitForJob(self, job):
        """Return once ``job`` (a RemoteJob, or None) has ended, the Qt event loop running
        meanwhile (a nested loop: timers, painting, the engine's output and the job's Cancel all
        go on); for the few calls that must not return before the engine's work has ended."""
        if job is None or job.finished:
            return
        loop = qt.QEventLoop()
        job.on_finished(lambda ended: loop.quit())
        if not job.finished:
            run = getattr(loop, "exec", None) or loop.exec_  # PythonQt may name it exec_
            run()

    def listenerStarting(self):
        """Whether the listener's start is under way (the engine opening the database, binding)."""
        return self._listenerStart is not None

    def listenerRunning(self):
        """Whether the listener accepts associations (False while it starts, and as soon as its
        stop began)."""
        return bool(self._listenerPort)

    def listenerStopping(self):
        """Whether the listener's stop is under way (associations under way finishing)."""
        return self._listenerStop is not None

    def listenerPort(self):
        return self._listenerPort
