"""``qt`` for tests: PySide6 made to behave like Slicer's PythonQt ``qt`` module.

In Slicer, ``import qt`` gives PythonQt's wrappers. Module code written for them reads and writes
Qt properties as attributes and connects signals by C++ signature strings. This module gives the
same surface over PySide6 so that such code runs unchanged under pytest:

* QtCore, QtGui, QtWidgets and QtUiTools are flattened into one namespace (``qt.QPushButton``,
  ``qt.Qt.AlignLeft``, ``qt.QMessageBox.Yes``...).
* **Properties are attributes.** Every ``Q_PROPERTY`` of every Qt class becomes a data
  descriptor: ``label.text`` is a ``str`` and ``label.text = "x"`` calls ``setText``. As in
  PythonQt (``PythonQtClassInfo::member``: property, then slot, then enum), the property hides
  the getter of the same name, so ``label.text()`` raises ``TypeError: 'str' object is not
  callable``. Writing a read-only property raises ``AttributeError``. Getters with other names
  (``isEnabled()``, ``layout()``) and setters (``setEnabled(x)``) keep working. As in PythonQt,
  the ``singleShot`` property of QTimer is not exposed, and class-level access returns the
  original method (``qt.QTimer.singleShot(0, f)``, ``qt.QApplication.applicationName()``).
* ``obj.name`` is ``objectName`` (PythonQt's PYTHONQT_SUPPORT_NAME_PROPERTY) and every QObject
  has ``className()``.
* ``obj.connect('clicked(bool)', slot)`` / ``obj.disconnect(...)``: a string signature must name
  an existing signal exactly (after Qt normalization), else ``AttributeError``. Signals declared
  in Python by the ctk/qMRML stand-ins have ``PyObject`` parameters; a C++ type name in the
  request (``vtkMRMLNode*``) matches a ``PyObject`` parameter in the same position.
* ``qt.QUiLoader`` creates the ctk/qMRML stand-ins and wires the ``<connections>`` of a .ui file
  (Qt's own wiring cannot match Python-declared signals). A .ui class that is neither a Qt widget
  nor a registered stand-in is an error, not a silent QWidget.

Not done (PythonQt differences that remain): QVariant conversions (``QSettings.value`` returns
typed values after an INI round trip, PythonQt returns strings), enums are PySide enums (not
ints: ``qt.Qt.Checked == 2`` is False), deleted C++ objects raise instead of being falsy, and the
three-argument form ``obj.connect(signal, receiver, 'slot()')`` resolves the slot by name only.
QtNetwork, QtSvg, QtXml... are not flattened in.
"""

from __future__ import annotations

import threading as _threading
import warnings as _warnings
import xml.etree.ElementTree as _ET
from types import MethodType as _MethodType

from PySide6 import QtCore as _QtCore
from PySide6 import QtGui as _QtGui
from PySide6 import QtUiTools as _QtUiTools
from PySide6 import QtWidgets as _QtWidgets

_MODULES = (_QtCore, _QtGui, _QtWidgets, _QtUiTools)

# PySide6 creates its classes lazily (module __getattr__): list them with dir(), not vars().
for _module in _MODULES:
    globals().update({k: getattr(_module, k) for k in dir(_module) if not k.startswith("_")})
del _module

# Originals, saved before any patching: the shim's own code must not use the property style
# on itself (``o.objectName`` is a str once this module is imported).
_QObject = _QtCore.QObject
_objectName = _QObject.objectName
_setObjectName = _QObject.setObjectName
_property = _QObject.property
_setProperty = _QObject.setProperty
_metaObject = _QObject.metaObject
_findChild = _QObject.findChild
_getattribute = _QObject.__getattribute__

# ---------------------------------------------------------------------------------------------
# Properties as attributes
# ---------------------------------------------------------------------------------------------

_EXCLUDED = {("QTimer", "singleShot")}  # as in PythonQt (lookForPropertyAndCache)
_reentry = _threading.local()


def _raw(cls, name):
    """The raw class-dict entry for ``name`` along the MRO (our descriptor -> its original)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            value = klass.__dict__[name]
            if isinstance(value, _PropertyAttribute):
                return value.original
            return value
    return None


def _caller(raw):
    """``f(obj, *args)`` for a raw method-descriptor or staticmethod entry, or None."""
    if raw is None:
        return None
    if isinstance(raw, staticmethod):
        func = raw.__func__
        return lambda obj, *args: func(*args)
    if callable(raw) and not isinstance(raw, type):
        return raw
    return None


class _PropertyAttribute:
    """A Q_PROPERTY exposed the PythonQt way (see module docstring)."""

    __slots__ = ("cls_name", "getter", "name", "original", "setter", "writable")

    def __init__(self, cls, name, writable):
        self.name = name
        self.cls_name = cls.__name__
        self.writable = writable
        self.original = cls.__dict__.get(name)  # shadowed getter of the same name, if any
        cap = name[:1].upper() + name[1:]
        self.getter = (
            _caller(self.original)
            or _caller(_raw(cls, name))
            or _caller(_raw(cls, "is" + cap))
            or _caller(_raw(cls, "has" + cap))
        )
        self.setter = _caller(_raw(cls, "set" + cap)) if writable else None

    def __get__(self, obj, cls=None):
        if obj is None:
            if self.original is not None:
                return self.original.__get__(None, cls)
            return self
        active = _reentry.__dict__.setdefault("keys", set())
        key = (id(obj), self.name)
        if key in active and self.original is not None:
            # Shiboken asks for a Python override of a C++ *virtual* getter (sizeHint...) by
            # attribute lookup. Reading the property called that virtual: hand back the bound
            # C++ method so that Shiboken sees "no override" instead of recursing forever.
            return self.original.__get__(obj, cls)
        active.add(key)
        try:
            if self.getter is not None:
                return self.getter(obj)
            return _property(obj, self.name)
        finally:
            active.discard(key)

    def __set__(self, obj, value):
        if not self.writable:
            raise AttributeError(f"Property '{self.name}' of {self.cls_name} is read only")
        if self.setter is not None:
            self.setter(obj, value)
        elif not _setProperty(obj, self.name, value):
            raise TypeError(f"cannot set property '{self.name}' of {self.cls_name} to {value!r}")


class _NameAttribute:
    """``obj.name`` <-> ``objectName`` (PythonQt PYTHONQT_SUPPORT_NAME_PROPERTY)."""

    def __get__(self, obj, cls=None):
        return self if obj is None else _objectName(obj)

    def __set__(self, obj, value):
        _setObjectName(obj, value)


def _pythonqtify(cls):
    """Install a property attribute for each Q_PROPERTY declared by (or re-declared in) ``cls``."""
    meta = cls.staticMetaObject
    for index in range(meta.propertyCount()):
        prop = meta.property(index)
        name = prop.name()
        if (cls.__name__, name) in _EXCLUDED:
            continue
        own = index >= meta.propertyOffset()
        present = cls.__dict__.get(name)
        if isinstance(present, _PropertyAttribute):
            continue
        if present is None and not own:
            continue  # inherited and not shadowed here: the base class carries it
        if present is not None and (isinstance(present, type) or type(present).__name__ == "Signal"):
            continue
        setattr(cls, name, _PropertyAttribute(cls, name, prop.isWritable()))


for _value in list(globals().values()):
    if isinstance(_value, type) and issubclass(_value, _QObject):
        _pythonqtify(_value)
del _value

_QObject.name = _NameAttribute()
_QObject.className = lambda self: _metaObject(self).className()

# ---------------------------------------------------------------------------------------------
# String-signature connect / disconnect
# ---------------------------------------------------------------------------------------------


def _signal_signature(obj, signature):
    """The exact signature of the signal of ``obj`` that ``signature`` names, or AttributeError."""
    if not isinstance(signature, str):
        raise TypeError(
            f"connect/disconnect expects a C++ signal signature string such as 'clicked(bool)', "
            f"got {signature!r}; or use obj.signalName.connect(slot)"
        )
    normalized = bytes(_QtCore.QMetaObject.normalizedSignature(signature).data()).decode()
    name, _, rest = normalized.partition("(")
    wanted = [t for t in rest.rstrip(")").split(",") if t]
    meta = _metaObject(obj)
    if meta.indexOfSignal(normalized) >= 0:
        return normalized
    same_name = []
    for index in range(meta.methodCount()):
        method = meta.method(index)
        if method.methodType() != _QtCore.QMetaMethod.MethodType.Signal:
            continue
        if bytes(method.name().data()).decode() != name:
            continue
        candidate = bytes(method.methodSignature().data()).decode()
        same_name.append(candidate)
        types = [bytes(t.data()).decode() for t in method.parameterTypes()]
        if len(types) == len(wanted) and all(
            t in (w, "PyObject") for t, w in zip(types, wanted, strict=True)
        ):
            return candidate
    raise AttributeError(
        f"{meta.className()} has no signal '{normalized}'"
        + (f"; signals of that name: {', '.join(same_name)}" if same_name else "")
    )


def _resolve_slot(slot, slot_signature):
    if slot_signature is None:
        if not callable(slot):
            raise TypeError(f"slot must be callable, got {slot!r}")
        return slot
    return getattr(slot, slot_signature.split("(", 1)[0])


def _connect(self, signal, slot, slot_signature=None):
    """PythonQt ``obj.connect('signal(args)', callable)`` (or ``receiver, 'slot(args)'``)."""
    signature = _signal_signature(self, signal)
    return bool(_QObject.connect(self, _QtCore.SIGNAL(signature), _resolve_slot(slot, slot_signature)))


def _disconnect(self, signal, slot, slot_signature=None):
    """PythonQt ``obj.disconnect('signal(args)', callable)``; False if it was not connected."""
    signature = _signal_signature(self, signal)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        return bool(_QObject.disconnect(self, _QtCore.SIGNAL(signature), _resolve_slot(slot, slot_signature)))


def _qobject_getattribute(self, name):
    # Shiboken resolves instance.connect/disconnect to its own static+member overloads before
    # looking at class attributes, so the override has to sit in __getattribute__ (QObject is
    # the only Qt class with its own getattro, so this covers every QObject).
    if name == "connect":
        return _MethodType(_connect, self)
    if name == "disconnect":
        return _MethodType(_disconnect, self)
    return _getattribute(self, name)


_QObject.__getattribute__ = _qobject_getattribute


def _own_getattribute(cls):
    original = cls.__dict__["__getattribute__"]

    def getattribute(self, name):
        if name == "connect":
            return _MethodType(_connect, self)
        if name == "disconnect":
            return _MethodType(_disconnect, self)
        return original(self, name)

    return getattribute


# A few more classes have a getattro of their own (QIODevice, hence QProcess): same override.
for _value in list(globals().values()):
    if (
        isinstance(_value, type)
        and issubclass(_value, _QObject)
        and _value is not _QObject
        and "__getattribute__" in _value.__dict__
    ):
        _value.__getattribute__ = _own_getattribute(_value)
del _value

# ---------------------------------------------------------------------------------------------
# Stand-in registry and .ui loading
# ---------------------------------------------------------------------------------------------

_custom_widgets: dict[str, type] = {}

# Dynamic properties that Slicer itself puts on widgets in .ui files (parameter node wrapper).
_ALLOWED_DYNAMIC_PROPERTIES = {"SlicerParameterName", "SlicerPackParameterName"}


def registerCustomWidget(cls):
    """Make ``cls`` (a ctk/qMRML stand-in) creatable by ``qt.QUiLoader`` under its class name."""
    _custom_widgets[cls.__name__] = cls
    return cls


class QUiLoader(_QtUiTools.QUiLoader):
    """QUiLoader that knows the ctk/qMRML stand-ins and wires ``<connections>`` itself."""

    def load(self, device, parentWidget=None):
        data = _read_ui(device)
        root = _ET.fromstring(data)
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        self._check_classes(root)
        _warn_ignored_properties(root)
        buffer = _QtCore.QBuffer()
        buffer.setData(_ET.tostring(root))
        buffer.open(_QtCore.QIODevice.OpenModeFlag.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if widget is None:
            return None
        if connections is not None:
            for connection in connections.findall("connection"):
                _wire(widget, connection)
        return widget

    def _check_classes(self, root):
        classes = {w.get("class") for w in root.iter("widget")}
        known = set(self.availableWidgets())
        unknown = classes - known - set(_custom_widgets)
        if any(c.startswith("ctk") for c in unknown):
            import ctk
        if any(c.startswith(("qMRML", "qSlicer")) for c in unknown):
            import slicer
        unknown = classes - known - set(_custom_widgets)
        if unknown:
            raise RuntimeError(
                f"the .ui file uses {', '.join(sorted(unknown))}, which the slicer-testing stubs do "
                "not provide: add a stand-in to Testing/slicer_stubs (ctk.py or slicer/slicer_testing.py)"
            )
        for cls in _custom_widgets.values():
            self.registerCustomWidget(cls)


def _read_ui(device):
    if isinstance(device, (str, bytes)) or hasattr(device, "__fspath__"):
        with open(device, "rb") as f:
            return f.read()
    return bytes(device.readAll().data())


def _find(root, name):
    if _objectName(root) == name:
        return root
    found = _findChild(root, _QObject, name)
    if found is None:
        raise RuntimeError(f".ui connection refers to '{name}', which is not in the loaded widget")
    return found


def _wire(root, connection):
    sender = _find(root, connection.findtext("sender"))
    receiver = _find(root, connection.findtext("receiver"))
    slot_name = connection.findtext("slot").split("(", 1)[0]
    _connect(sender, connection.findtext("signal"), getattr(receiver, slot_name))


def _warn_ignored_properties(root):
    """Warn about .ui properties that a stand-in does not declare: Qt would ignore them."""
    for element in root.iter("widget"):
        cls = _custom_widgets.get(element.get("class"))
        if cls is None:
            continue
        meta = cls.staticMetaObject
        for prop in element.findall("property"):
            name = prop.get("name")
            if meta.indexOfProperty(name) < 0 and name not in _ALLOWED_DYNAMIC_PROPERTIES:
                _warnings.warn(
                    f"{cls.__name__} stand-in '{element.get('name')}' ignores .ui property '{name}'",
                    stacklevel=4,
                )
