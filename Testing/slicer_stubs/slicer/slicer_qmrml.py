"""Stand-ins for the qMRML widgets that DICOMPlus uses: ``slicer.qMRMLWidget``,
``slicer.qMRMLNodeComboBox`` and ``slicer.qMRMLSubjectHierarchyTreeView``.

Slicer's qMRML widgets are C++ (Qt + MRML) and do not exist outside Slicer. These PySide6
re-implementations stay synchronized with the REAL scene through VTK observers, and are
registered with ``qt.QUiLoader`` so module .ui files can use them. Each class says what it does
NOT do. Like every module in this folder, public names here become ``slicer.<name>`` (see
slicer_testing.py), so imports are aliased with a leading underscore.
"""

import weakref as _weakref

import qt as _qt
import shiboken6 as _shiboken
import slicer_core as _core
import vtk as _vtk

# ---------------------------------------------------------------------------------------------
# qMRML widget stand-ins
# ---------------------------------------------------------------------------------------------


class _SceneObservations:
    """VTK observers that call ``widget.method()`` and remove themselves once the widget's C++
    object is gone (a widget deleted by Qt must not be called from a later test's scene)."""

    def __init__(self, widget, method):
        self._widget = _weakref.ref(widget)
        self._method = method
        self._tags = []

    def observe(self, vtkObject, events):
        for event in events:
            self._tags.append((vtkObject, vtkObject.AddObserver(event, self._callback)))

    def clear(self):
        for vtkObject, tag in self._tags:
            vtkObject.RemoveObserver(tag)
        self._tags = []

    def _callback(self, caller, event):
        widget = self._widget()
        if widget is None or not _shiboken.isValid(widget):
            self.clear()
            return
        getattr(widget, self._method)()


@_qt.registerCustomWidget
class qMRMLWidget(_qt.QWidget):
    """Root of a module .ui: holds the scene and emits ``mrmlSceneChanged(vtkMRMLScene*)``.

    Provides ``setMRMLScene(scene)`` (emits only when the scene changes) and ``mrmlScene()``.
    """

    mrmlSceneChanged = _qt.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._mrmlScene = None

    def setMRMLScene(self, scene):
        if scene is self._mrmlScene:
            return
        self._mrmlScene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._mrmlScene


def _boolProperty(attribute):
    def getter(self):
        return getattr(self, attribute)

    def setter(self, value):
        setattr(self, attribute, bool(value))
        self._refresh()

    return _qt.Property(bool, getter, setter)


@_qt.registerCustomWidget
class qMRMLNodeComboBox(_qt.QWidget):
    """A combo box listing the scene's nodes of ``nodeTypes``, synchronized with the real scene.

    Provides properties ``nodeTypes`` (list of class names), ``noneEnabled``, ``showHidden``,
    ``showChildNodeTypes``, ``addEnabled``/``removeEnabled``/``editEnabled``/``renameEnabled``/
    ``selectNodeUponCreation`` (stored only), ``noneDisplay``, ``currentNodeID``; methods
    ``setMRMLScene``, ``mrmlScene``, ``currentNode``, ``setCurrentNode``, ``setCurrentNodeID``,
    ``nodeCount``, ``nodeFromIndex``; signals ``currentNodeChanged(vtkMRMLNode*)``,
    ``currentNodeChanged(bool)``, ``currentNodeIDChanged(QString)``. With ``noneEnabled`` False
    the first node is selected when nothing is.

    Does NOT do: the "Create new"/"Rename"/"Delete" actions, attribute filters
    (``addAttribute``), base names, node renames (the list refreshes on node add/remove only).
    """

    currentNodeChanged = _qt.Signal((object,), (bool,))
    currentNodeIDChanged = _qt.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._nodeTypes = []
        self._noneEnabled = False
        self._showHidden = False
        self._showChildNodeTypes = True
        self._addEnabled = True
        self._removeEnabled = True
        self._editEnabled = False
        self._renameEnabled = False
        self._selectNodeUponCreation = True
        self._noneDisplay = "None"
        self._mrmlScene = None
        self._currentID = ""
        self._observations = _SceneObservations(self, "_refresh")
        layout = _qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._comboBox = _qt.QComboBox(self)
        layout.addWidget(self._comboBox)
        self._comboBox.currentIndexChanged.connect(self._onIndexChanged)

    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, nodeTypes):
        self._nodeTypes = [t for t in nodeTypes if t]
        self._refresh()

    nodeTypes = _qt.Property("QStringList", _getNodeTypes, _setNodeTypes)
    noneEnabled = _boolProperty("_noneEnabled")
    showHidden = _boolProperty("_showHidden")
    showChildNodeTypes = _boolProperty("_showChildNodeTypes")
    addEnabled = _boolProperty("_addEnabled")
    removeEnabled = _boolProperty("_removeEnabled")
    editEnabled = _boolProperty("_editEnabled")
    renameEnabled = _boolProperty("_renameEnabled")
    selectNodeUponCreation = _boolProperty("_selectNodeUponCreation")

    def _getNoneDisplay(self):
        return self._noneDisplay

    def _setNoneDisplay(self, text):
        self._noneDisplay = str(text)
        self._refresh()

    noneDisplay = _qt.Property(str, _getNoneDisplay, _setNoneDisplay)

    def _getCurrentNodeID(self):
        return self._currentID

    currentNodeID = _qt.Property(str, _getCurrentNodeID, lambda self, nodeID: self.setCurrentNodeID(nodeID))

    def setMRMLScene(self, scene):
        if scene is self._mrmlScene:
            return
        self._observations.clear()
        self._mrmlScene = scene
        if scene is not None:
            S = _core.vtkMRMLScene
            events = (
                S.NodeAddedEvent,
                S.NodeRemovedEvent,
                S.EndCloseEvent,
                S.EndImportEvent,
                S.EndBatchProcessEvent,
            )
            self._observations.observe(scene, events)
        self._refresh()

    def mrmlScene(self):
        return self._mrmlScene

    def _matches(self, node):
        if not self._showHidden and node.GetHideFromEditors():
            return False
        if not self._nodeTypes:
            return False
        if self._showChildNodeTypes:
            return any(node.IsA(t) for t in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def _nodes(self):
        scene = self._mrmlScene
        if scene is None or scene.IsBatchProcessing():
            return []
        nodes = (scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes()))
        return [n for n in nodes if self._matches(n)]

    def _refresh(self):
        nodes = self._nodes()
        ids = [n.GetID() for n in nodes]
        blocked = self._comboBox.blockSignals(True)
        self._comboBox.clear()
        if self._noneEnabled:
            self._comboBox.addItem(self._noneDisplay, "")
        for node in nodes:
            self._comboBox.addItem(node.GetName() or node.GetID(), node.GetID())
        current = self._currentID if self._currentID in ids else ""
        if not current and not self._noneEnabled and ids:
            current = ids[0]
        self._comboBox.setCurrentIndex(max(0, self._comboBox.findData(current)))
        self._comboBox.blockSignals(blocked)
        self._setCurrent(current)

    def _onIndexChanged(self, index):
        self._setCurrent(self._comboBox.itemData(index) or "")

    def _setCurrent(self, nodeID):
        if nodeID == self._currentID:
            return
        self._currentID = nodeID
        node = self.currentNode()
        self.currentNodeChanged[object].emit(node)
        self.currentNodeChanged[bool].emit(node is not None)
        self.currentNodeIDChanged.emit(nodeID)

    def currentNode(self):
        if not self._currentID or self._mrmlScene is None:
            return None
        return self._mrmlScene.GetNodeByID(self._currentID)

    def setCurrentNode(self, node):
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeID):
        index = self._comboBox.findData(nodeID or "")
        if index < 0 and nodeID:
            raise ValueError(f"node '{nodeID}' is not listed by this qMRMLNodeComboBox")
        if index >= 0:
            self._comboBox.setCurrentIndex(index)
        self._setCurrent(nodeID or "")

    def nodeCount(self):
        return len(self._nodes())

    def nodeFromIndex(self, index):
        nodes = self._nodes()
        return nodes[index] if 0 <= index < len(nodes) else None


@_qt.registerCustomWidget
class qMRMLSubjectHierarchyTreeView(_qt.QTreeView):
    """A tree of the real subject hierarchy (one "Name" column), refreshed on hierarchy events.

    Provides ``setMRMLScene``, ``mrmlScene``, ``subjectHierarchyNode()``, ``currentItem()``
    (vtkIdType, 0 when nothing is selected), ``setCurrentItem(itemID)``, ``refresh()``, signal
    ``currentItemChanged(vtkIdType)``.

    Does NOT do: the other columns (visibility, color, transform, ID, description), plugin
    icons and context menus, drag and drop, filtering (``attributeNameFilter`` ...), multiple
    selection (``currentItems``), editing names.
    """

    currentItemChanged = _qt.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._mrmlScene = None
        self._model = _qt.QStandardItemModel(self)
        self._model.setHorizontalHeaderLabels(["Name"])
        self.setModel(self._model)
        self.setEditTriggers(_qt.QAbstractItemView.EditTrigger.NoEditTriggers)
        self._observations = _SceneObservations(self, "refresh")
        self.selectionModel().currentChanged.connect(self._onCurrentChanged)

    def setMRMLScene(self, scene):
        if scene is self._mrmlScene:
            return
        self._observations.clear()
        self._mrmlScene = scene
        if scene is not None:
            sh = self.subjectHierarchyNode()
            SH = _core.vtkMRMLSubjectHierarchyNode
            events = (
                SH.SubjectHierarchyItemAddedEvent,
                SH.SubjectHierarchyItemRemovedEvent,
                SH.SubjectHierarchyItemModifiedEvent,
                SH.SubjectHierarchyItemReparentedEvent,
            )
            self._observations.observe(sh, events)
            self._observations.observe(scene, (_core.vtkMRMLScene.EndCloseEvent,))
        self.refresh()

    def mrmlScene(self):
        return self._mrmlScene

    def subjectHierarchyNode(self):
        if self._mrmlScene is None:
            return None
        return _core.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self._mrmlScene)

    def refresh(self):
        current = self.currentItem()
        self._model.removeRows(0, self._model.rowCount())
        sh = self.subjectHierarchyNode()
        if sh is None:
            return
        self._addChildren(sh, sh.GetSceneItemID(), self._model.invisibleRootItem())
        self.expandAll()
        if current:
            self.setCurrentItem(current)

    def _addChildren(self, sh, parentID, parentRow):
        children = _vtk.vtkIdList()
        sh.GetItemChildren(parentID, children)
        for i in range(children.GetNumberOfIds()):
            itemID = children.GetId(i)
            row = _qt.QStandardItem(sh.GetItemName(itemID))
            row.setData(itemID, _qt.Qt.ItemDataRole.UserRole)
            parentRow.appendRow(row)
            self._addChildren(sh, itemID, row)

    def _find(self, itemID):
        for index in self._model.match(
            self._model.index(0, 0),
            _qt.Qt.ItemDataRole.UserRole,
            itemID,
            1,
            _qt.Qt.MatchFlag.MatchExactly | _qt.Qt.MatchFlag.MatchRecursive,
        ):
            return index
        return None

    def currentItem(self):
        index = self.currentIndex()
        return int(index.data(_qt.Qt.ItemDataRole.UserRole) or 0) if index.isValid() else 0

    def setCurrentItem(self, itemID):
        index = self._find(itemID) if itemID else None
        self.setCurrentIndex(index if index is not None else _qt.QModelIndex())

    def _onCurrentChanged(self, current, previous):
        self.currentItemChanged.emit(self.currentItem())
