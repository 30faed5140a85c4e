"""The Network section's widgets, built onto a :class:`~.network.DICOMPlusNetworkWidget` (what a
.ui file would hold: the server row and its node form, the query form, the results tree, the
Retrieve/Send buttons, the listener box), apart from its behaviour in ``network.py``."""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from .activity import DICOMPlusActivityWidget
from .fitting import ElidedButton

RESULT_COLUMNS = ("Patient / description", "Date", "Modality", "Instances")


def setupUi(widget, activity):
    """Create ``widget``'s child widgets as attributes of it and connect them to its slots;
    ``activity``: the host's activity widget for the jobs, else one of the widget's own."""
    layout = qt.QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)

    server = qt.QGroupBox(_("Server"), widget)
    serverLayout = qt.QVBoxLayout(server)
    row = qt.QHBoxLayout()
    widget.nodeCombo = qt.QComboBox(server)
    widget.nodeCombo.toolTip = _("The remote DICOM node (PACS) to query, retrieve from and send to")
    widget.nodeCombo.connect("currentIndexChanged(int)", widget._onNodeChanged)
    row.addWidget(widget.nodeCombo, 1)
    serverLayout.addLayout(row)
    row = qt.QHBoxLayout()
    widget.echoButton = qt.QPushButton(_("Echo"), server)
    widget.echoButton.toolTip = _("Test the connection with a C-ECHO (DICOM ping)")
    widget.echoButton.connect("clicked(bool)", widget.onEcho)
    row.addWidget(widget.echoButton)
    widget.addButton = qt.QPushButton(_("Add..."), server)
    widget.addButton.toolTip = _("Add a server node (or edit the one shown)")
    widget.addButton.connect("clicked(bool)", widget.showNodeForm)
    row.addWidget(widget.addButton)
    widget.removeButton = qt.QPushButton(_("Remove"), server)
    widget.removeButton.toolTip = _("Forget the server node shown")
    widget.removeButton.connect("clicked(bool)", widget.onRemoveNode)
    row.addWidget(widget.removeButton)
    serverLayout.addLayout(row)

    widget.nodeForm = qt.QFrame(server)
    widget.nodeForm.frameShape = qt.QFrame.StyledPanel
    form = qt.QFormLayout(widget.nodeForm)
    widget.nodeNameEdit = qt.QLineEdit(widget.nodeForm)
    widget.nodeNameEdit.placeholderText = _("e.g. Hospital PACS")
    form.addRow(_("Name:"), widget.nodeNameEdit)
    widget.nodeAETitleEdit = qt.QLineEdit(widget.nodeForm)
    widget.nodeAETitleEdit.placeholderText = _("called AE title, e.g. ORTHANC")
    widget.nodeAETitleEdit.maxLength = 16
    form.addRow(_("AE title:"), widget.nodeAETitleEdit)
    widget.nodeHostEdit = qt.QLineEdit(widget.nodeForm)
    widget.nodeHostEdit.placeholderText = _("host name or address")
    form.addRow(_("Host:"), widget.nodeHostEdit)
    widget.nodePortSpinBox = qt.QSpinBox(widget.nodeForm)
    widget.nodePortSpinBox.minimum = 1
    widget.nodePortSpinBox.maximum = 65535
    widget.nodePortSpinBox.value = 104
    form.addRow(_("Port:"), widget.nodePortSpinBox)
    widget.nodeWebURLEdit = qt.QLineEdit(widget.nodeForm)
    widget.nodeWebURLEdit.placeholderText = _("optional, e.g. http://pacs:8042/dicom-web")
    widget.nodeWebURLEdit.toolTip = _(
        "The server's DICOMweb root (QIDO-RS, WADO-RS, STOW-RS). Leave the AE title empty for a "
        "server reached by DICOMweb only"
    )
    form.addRow(_("DICOMweb URL:"), widget.nodeWebURLEdit)
    widget.nodeMethodCombo = qt.QComboBox(widget.nodeForm)
    for method in ("C-GET", "C-MOVE", "DICOMweb"):
        widget.nodeMethodCombo.addItem(method)
    widget.nodeMethodCombo.toolTip = _(
        "C-GET brings the data back on the same connection; C-MOVE has the server send it to "
        "our listener (start it below, and register its AE title, host and port on the server); "
        "DICOMweb fetches it over HTTP (WADO-RS) from the DICOMweb URL"
    )
    form.addRow(_("Retrieve with:"), widget.nodeMethodCombo)
    formButtons = qt.QHBoxLayout()
    widget.saveNodeButton = qt.QPushButton(_("Save node"), widget.nodeForm)
    widget.saveNodeButton.connect("clicked(bool)", widget.onSaveNode)
    formButtons.addWidget(widget.saveNodeButton)
    widget.cancelNodeButton = qt.QPushButton(_("Cancel"), widget.nodeForm)
    widget.cancelNodeButton.connect("clicked(bool)", lambda *args: widget.nodeForm.hide())
    formButtons.addWidget(widget.cancelNodeButton)
    form.addRow(formButtons)
    serverLayout.addWidget(widget.nodeForm)
    widget.nodeForm.hide()

    widget.echoLabel = qt.QLabel("", server)
    widget.echoLabel.wordWrap = True
    widget.echoLabel.textInteractionFlags = qt.Qt.TextSelectableByMouse
    serverLayout.addWidget(widget.echoLabel)
    layout.addWidget(server)

    queryBox = qt.QGroupBox(_("Query"), widget)
    queryForm = qt.QFormLayout(queryBox)
    widget.patientNameEdit = qt.QLineEdit(queryBox)
    widget.patientNameEdit.placeholderText = _("DOE^JOHN, or DOE* (a prefix matches)")
    queryForm.addRow(_("Patient name:"), widget.patientNameEdit)
    widget.patientIDEdit = qt.QLineEdit(queryBox)
    queryForm.addRow(_("Patient ID:"), widget.patientIDEdit)
    dates = qt.QHBoxLayout()
    widget.dateFromEdit = qt.QLineEdit(queryBox)
    widget.dateFromEdit.placeholderText = _("from")
    widget.dateToEdit = qt.QLineEdit(queryBox)
    widget.dateToEdit.placeholderText = _("to")
    for edit in (widget.dateFromEdit, widget.dateToEdit):  # any of these, as the results show dates
        edit.toolTip = _("A date: 2024-01-31, 20240131, or 2024-01 or 2024 for all its days")
    dates.addWidget(widget.dateFromEdit)
    dates.addWidget(widget.dateToEdit)
    queryForm.addRow(_("Study date:"), dates)
    widget.modalityEdit = qt.QLineEdit(queryBox)
    widget.modalityEdit.placeholderText = _("CT, MR, ...")
    queryForm.addRow(_("Modality:"), widget.modalityEdit)
    widget.descriptionEdit = qt.QLineEdit(queryBox)
    queryForm.addRow(_("Description:"), widget.descriptionEdit)
    widget.accessionEdit = qt.QLineEdit(queryBox)
    queryForm.addRow(_("Accession:"), widget.accessionEdit)
    for edit in (widget.patientNameEdit, widget.patientIDEdit, widget.dateFromEdit, widget.dateToEdit,
                 widget.modalityEdit, widget.descriptionEdit, widget.accessionEdit):  # fmt: skip
        edit.clearButtonEnabled = True
        edit.connect("returnPressed()", widget.onQuery)
    widget.queryButton = qt.QPushButton(_("Query"), queryBox)
    widget.queryButton.toolTip = _("Find the studies matching the form on the server (C-FIND)")
    widget.queryButton.connect("clicked(bool)", widget.onQuery)
    queryForm.addRow(widget.queryButton)
    layout.addWidget(queryBox)

    tree = qt.QTreeWidget(widget)
    tree.columnCount = len(RESULT_COLUMNS)
    tree.setHeaderLabels([_("Patient / description"), _("Date"), _("Modality"), _("Instances")])
    tree.selectionMode = qt.QAbstractItemView.ExtendedSelection
    tree.alternatingRowColors = True
    tree.indentation = 14
    tree.minimumHeight = 160
    tree.toolTip = _("Studies found on the server; expand a study to see its series")
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, qt.QHeaderView.Stretch)
    for column in range(1, len(RESULT_COLUMNS)):
        header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
    tree.connect("itemExpanded(QTreeWidgetItem*)", widget._onItemExpanded)
    tree.connect("itemSelectionChanged()", widget._updateButtons)
    layout.addWidget(tree, 1)
    widget.resultsTree = tree

    buttons = qt.QHBoxLayout()
    widget.retrieveButton = qt.QPushButton(_("Retrieve selected"), widget)
    widget.retrieveButton.toolTip = _("Copy the selected studies or series into the local database")
    widget.retrieveButton.connect("clicked(bool)", widget.onRetrieve)
    buttons.addWidget(widget.retrieveButton)
    # its label may name the server (the module's "Send to <server>"): cut to fit, whole in the tooltip
    widget.sendButton = ElidedButton(_("Send selected"), _("Send..."), widget)
    widget.sendButton.setFullText(
        _("Send selected"), _("Send the series selected in the local database to the server")
    )
    widget.sendButton.connect("clicked(bool)", widget.onSend)
    buttons.addWidget(widget.sendButton)
    layout.addLayout(buttons)
    widget.statusLabel = qt.QLabel("", widget)
    widget.statusLabel.wordWrap = True
    layout.addWidget(widget.statusLabel)

    listenerBox = qt.QGroupBox(_("Listener (receive from other nodes)"), widget)
    listenerLayout = qt.QGridLayout(listenerBox)
    widget.listenerButton = qt.QPushButton(_("Start listener"), listenerBox)
    widget.listenerButton.checkable = True
    widget.listenerButton.toolTip = _("Accept C-STORE from other nodes into the local database")
    widget.listenerButton.connect("toggled(bool)", widget.setListenerRunning)
    listenerLayout.addWidget(widget.listenerButton, 0, 0, 1, 2)
    widget.autoLoadCheckBox = qt.QCheckBox(_("Auto-load"), listenerBox)
    widget.autoLoadCheckBox.toolTip = _("Load each series into the scene when it has arrived")
    listenerLayout.addWidget(widget.autoLoadCheckBox, 0, 2, 1, 2)
    listenerLayout.addWidget(qt.QLabel(_("AE title:"), listenerBox), 1, 0)
    widget.listenerAETitleEdit = qt.QLineEdit(listenerBox)
    widget.listenerAETitleEdit.maxLength = 16
    listenerLayout.addWidget(widget.listenerAETitleEdit, 1, 1)
    listenerLayout.addWidget(qt.QLabel(_("Port:"), listenerBox), 1, 2)
    widget.listenerPortSpinBox = qt.QSpinBox(listenerBox)
    widget.listenerPortSpinBox.minimum = 1
    widget.listenerPortSpinBox.maximum = 65535
    listenerLayout.addWidget(widget.listenerPortSpinBox, 1, 3)
    listenerLayout.setColumnStretch(1, 1)
    layout.addWidget(listenerBox)
    widget.listenerStatusLabel = qt.QLabel(_("Listener stopped"), widget)
    widget.listenerStatusLabel.wordWrap = True
    layout.addWidget(widget.listenerStatusLabel)

    if activity is None:
        activity = DICOMPlusActivityWidget(widget)
        layout.addWidget(activity)
        widget._ownActivity = True
    else:
        widget._ownActivity = False
    widget.activity = activity
