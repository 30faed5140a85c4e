"""``@dataclass`` for DICOMPlusLib's value types: what the standard library's does for them, at a
fifth of the cost of defining one.

The standard ``dataclasses.dataclass`` compiles each generated method of a class with an ``exec``
of its own as the class's module is imported (``__init__``, ``__repr__``, ``__eq__``, and for a
frozen class ``__setattr__``, ``__delattr__``, ``__hash__``), and ``dataclasses`` imports
``inspect`` (with ``ast``, ``dis``, ``tokenize``). On this project's machine that was 0.3-0.7 ms
a class and ~5 ms of imports: a ``dicomplus retrieve`` defined 40 of them before its first
association, ~25 ms of a start of ~75 ms (docs/performance.md, "Start-up", session 16). Here
only ``__init__`` is compiled, with one ``exec`` a class; the other methods are shared functions
that read the class's field names: a class costs ~0.09 ms. Every class of the package is made
by this module (``Testing/test_dataclasses_lite.py`` checks that none imports ``dataclasses``).

The subset is what DICOMPlusLib's value types use, with the standard library's meaning:

- ``@dataclass``; ``frozen``, ``eq``, ``repr``, ``slots`` and ``match_args`` as arguments;
- fields from the class's own annotations in order, after those of a base made by this
  decorator; a ``ClassVar`` annotation is not a field;
- defaults: a value, ``field(default=...)``, ``field(default_factory=...)``; ``field(repr=False)``,
  ``field(compare=False)`` (also out of the hash), ``field(hash=False)``;
- ``__post_init__`` when the class defines one; a method the class's body defines is kept;
- the hash: a frozen class with ``eq`` hashes its hashed fields, a mutable one with ``eq`` is
  unhashable, one without ``eq`` keeps ``object``'s;
- a frozen instance refuses ``setattr`` and ``delattr`` with :class:`FrozenInstanceError` (an
  ``AttributeError``, as the standard library's is);
- :func:`fields`, :func:`replace` and :func:`asdict` for these classes (``asdict`` recurses into
  these classes, lists, tuples and dicts, as the standard one does; other values it returns as
  they are, where the standard one deep-copies them: the package's are strings, numbers, enums).

Not supported (the decorator refuses what it does not know rather than doing something else):
``order``, ``kw_only``, ``init=False``, ``unsafe_hash``, ``InitVar`` and ``field(init=False)``.
Type checkers read the decorator as a dataclass (``dataclass_transform``).
``Testing/test_dataclasses_lite.py`` holds each behaviour against the standard library's on the
same class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator


__all__ = ["Field", "FrozenInstanceError", "asdict", "dataclass", "field", "fields", "replace"]

T = TypeVar("T")


class FrozenInstanceError(AttributeError):
    """An attribute of a frozen instance was set or deleted."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Factory:
    """The default an ``__init__`` parameter shows when its field has a default factory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


HAS_FACTORY: Any = _Factory()


class Field:
    """One field of a class: its name, its default or default factory, and whether it shows in
    the ``repr`` and takes part in comparison and hashing."""

    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr", "type")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,
        compare: bool = True,
        hash: bool | None = None,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: Any = None  # the annotation (a string under ``from __future__ import annotations``)
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = compare if hash is None else hash

    def __repr__(self) -> str:
        return (
            f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"
        )


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
) -> Any:
    """A field's options, as ``dataclasses.field`` (the parameters this module supports)."""
    return Field(default, default_factory, repr, compare, hash)


_FIELDS = "__dataclass_lite_fields__"


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """The fields of a class made by :func:`dataclass` (or of its instance), in order."""
    try:
        return getattr(class_or_instance, _FIELDS)
    except AttributeError:
        raise TypeError("must be called with a dataclass_lite type or instance") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A new instance of ``obj``'s class, with ``changes`` over ``obj``'s field values."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def asdict(obj: Any, *, dict_factory: Callable[[list[tuple[str, Any]]], Any] = dict) -> Any:
    """``obj``'s fields as a dict, recursing into such instances, lists, tuples and dicts."""
    if not hasattr(type(obj), _FIELDS):
        raise TypeError("asdict() should be called on dataclass_lite instances")
    return _asdict(obj, dict_factory)


def _asdict(obj: Any, dict_factory: Callable[[list[tuple[str, Any]]], Any]) -> Any:
    if hasattr(type(obj), _FIELDS):
        return dict_factory([(f.name, _asdict(getattr(obj, f.name), dict_factory)) for f in fields(obj)])
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple keeps its type
        return type(obj)(*[_asdict(v, dict_factory) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_asdict(v, dict_factory) for v in obj)
    if isinstance(obj, dict):
        return type(obj)((_asdict(k, dict_factory), _asdict(v, dict_factory)) for k, v in obj.items())
    return obj


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(
    cls: Any = None,
    /,
    *,
    frozen: bool = False,
    eq: bool = True,
    repr: bool = True,
    slots: bool = False,
    match_args: bool = True,
    **unsupported: Any,
) -> Any:
    """Make ``cls`` a dataclass (see the module's docstring for what is supported)."""
    if unsupported:
        raise TypeError(f"dataclasses_lite does not support {', '.join(sorted(unsupported))}")

    def wrap(cls: type) -> type:
        return _process(cls, frozen=frozen, eq=eq, repr=repr, slots=slots, match_args=match_args)

    return wrap if cls is None else wrap(cls)


def _is_classvar(annotation: Any) -> bool:
    """``ClassVar`` or ``ClassVar[...]``, written as a string (``from __future__ import
    annotations``) or evaluated (``typing.ClassVar[int]`` shows as such in its ``repr``)."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _process(cls: type, *, frozen: bool, eq: bool, repr: bool, slots: bool, match_args: bool) -> type:
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get(_FIELDS, ()):
            inherited[f.name] = f
    own = getattr(cls, "__annotations__", {})  # the class's own (3.10+): inspect is not imported
    for name, value in cls.__dict__.items():
        if isinstance(value, Field) and name not in own:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    frozen_bases = {
        base.__setattr__ is _frozen_setattr for base in cls.__mro__[1:] if _FIELDS in base.__dict__
    }
    if frozen_bases and frozen_bases != {frozen}:
        made = "frozen" if frozen else "non-frozen"
        raise TypeError(f"cannot inherit {made} dataclass {cls.__name__} from a {'non-' * frozen}frozen one")
    all_fields = dict(inherited)
    for name, annotation in own.items():
        if _is_classvar(annotation):
            continue
        if (annotation if isinstance(annotation, str) else type(annotation).__name__).startswith("InitVar"):
            raise TypeError(f"dataclasses_lite does not support InitVar ({cls.__name__}.{name})")
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        f.type = annotation
        if f.default is not MISSING and type(f.default).__hash__ is None:  # unhashable: list, dict, set
            raise ValueError(
                f"mutable default {type(f.default)} for field {name} is not allowed: use default_factory"
            )
        if isinstance(value, Field):  # the class attribute holds the default, as dataclasses leaves it
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        all_fields[name] = f
    ordered = tuple(all_fields.values())
    if slots:
        cls = _with_slots(cls, ordered, frozen)
    setattr(cls, _FIELDS, ordered)
    cls.__dataclass_lite_compared__ = tuple(f.name for f in ordered if f.compare)  # type: ignore[attr-defined]
    cls.__dataclass_lite_hashed__ = tuple(f.name for f in ordered if f.hash)  # type: ignore[attr-defined]
    # As the standard library does, a method the class's body defines is kept, not replaced.
    _set_new(cls, "__init__", _make_init(cls, ordered, frozen=frozen))
    if repr:
        _set_new(cls, "__repr__", _repr)
    if eq:
        _set_new(cls, "__eq__", _eq)
    class_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    if eq and not explicit_hash:
        cls.__hash__ = _hash if frozen else None  # type: ignore[assignment, method-assign]
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in cls.__dict__:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment, method-assign]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment, method-assign]
    if match_args:
        _set_new(cls, "__match_args__", tuple(f.name for f in ordered))
    return cls


def _with_slots(cls: type, ordered: tuple[Field, ...], frozen: bool) -> type:
    """A new class in place of ``cls``, its fields in ``__slots__`` (as the standard library makes
    it): its instances have no ``__dict__``. A frozen one pickles through ``__getstate__`` and
    ``__setstate__``, which set its fields past the refusing ``__setattr__``."""
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} already specifies __slots__")
    inherited = {name for base in cls.__mro__[1:-1] for name in base.__dict__.get("__slots__", ())}
    names = tuple(f.name for f in ordered if f.name not in inherited)
    body = {k: v for k, v in cls.__dict__.items() if k not in (*names, "__dict__", "__weakref__")}
    body["__slots__"] = names
    if frozen:
        body.setdefault("__getstate__", _slots_getstate)
        body.setdefault("__setstate__", _slots_setstate)
    made = type(cls)(cls.__name__, cls.__bases__, body)
    made.__qualname__ = cls.__qualname__
    return made


def _slots_getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]


def _slots_setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


def _set_new(cls: type, name: str, value: Any) -> None:
    if name not in cls.__dict__:
        setattr(cls, name, value)


def _make_init(cls: type, ordered: tuple[Field, ...], *, frozen: bool) -> Callable[..., None]:
    """``__init__`` compiled from source, one ``exec`` for the class (~0.08 ms; the standard
    library's six took ~0.4 ms). It sets each field as the standard library's does: ``self.x = x``,
    or ``object.__setattr__`` past a frozen class's refusing ``__setattr__``. Not through
    ``self.__dict__``: on Python 3.11 and 3.12 asking for it turns the instance's compact values
    into a dict object of its own (~130 bytes more an instance, slower attribute reads)."""
    namespace: dict[str, Any] = {"HAS_FACTORY": HAS_FACTORY, "_object_setattr": object.__setattr__}
    params, values = [], []
    seen_default = False
    for f in ordered:
        if f.name in ("self", "HAS_FACTORY", "_object_setattr") or f.name.startswith(("_fct_", "_dflt_")):
            raise TypeError(f"field name {f.name!r} is reserved")
        if f.default is not MISSING:
            namespace[f"_dflt_{f.name}"] = f.default
            params.append(f"{f.name}=_dflt_{f.name}")
            values.append(f.name)
            seen_default = True
        elif f.default_factory is not MISSING:
            namespace[f"_fct_{f.name}"] = f.default_factory
            params.append(f"{f.name}=HAS_FACTORY")
            values.append(f"_fct_{f.name}() if {f.name} is HAS_FACTORY else {f.name}")
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            params.append(f.name)
            values.append(f.name)
    if not ordered:
        body = ["pass"]
    elif frozen:
        body = [f"_object_setattr(self, {f.name!r}, {v})" for f, v in zip(ordered, values, strict=True)]
    else:
        body = [f"self.{f.name} = {v}" for f, v in zip(ordered, values, strict=True)]
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__({', '.join(['self', *params])}):\n    " + "\n    ".join(body)
    # The function's globals are `namespace` (the defaults, the factories), never the class's
    # module: a field named like one of its globals cannot be confused with it.
    exec(source, namespace)
    init = namespace["__init__"]
    init.__annotations__ = {**{f.name: f.type for f in ordered}, "return": None}  # as inspect shows them
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    compared = self.__dataclass_lite_compared__
    return [getattr(self, n) for n in compared] == [getattr(other, n) for n in compared]


def _hash(self: Any) -> int:
    return hash(tuple([getattr(self, n) for n in self.__dataclass_lite_hashed__]))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
