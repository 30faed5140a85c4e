"""``DICOMPlusLib.dataclasses_lite`` against the standard library's ``dataclasses``: the same class
body made by each must behave the same (construction, defaults, ``repr``, equality, hashing,
frozen instances, ``__post_init__``, inheritance, ``fields``/``replace``/``asdict``), and what
the lite one does not support must be refused, not half done."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import pickle
from typing import ClassVar

import pytest

from DICOMPlusLib import dataclasses_lite as lite


def _both(body, **params):
    """The class ``body(dataclass, field)`` makes, once by each implementation."""
    return (
        body(lambda cls: dataclasses.dataclass(cls, **params), dataclasses.field),
        body(lambda cls: lite.dataclass(cls, **params), lite.field),
    )


def _point(dataclass, field):
    @dataclass
    class Point:
        """A point."""

        x: int
        y: int = 0
        tags: list = field(default_factory=list)
        note: str = field(default="", repr=False)
        cache: dict = field(default_factory=dict, compare=False)
        kind: ClassVar[str] = "point"

    return Point


@pytest.mark.parametrize("frozen", [False, True])
def test_construction_defaults_repr_and_equality_match_the_standard_library(frozen):
    std, ours = _both(_point, frozen=frozen)
    assert str(inspect.signature(ours)) == str(inspect.signature(std))
    for args, kwargs in [
        ((1,), {}),
        ((1, 2), {"note": "n"}),
        ((), {"x": 3, "tags": [1]}),
        ((1, 2, [3], "z", {"a": 1}), {}),
    ]:
        a, b = std(*args, **kwargs), ours(*args, **kwargs)
        assert repr(a).replace(std.__qualname__, "") == repr(b).replace(ours.__qualname__, "")
        assert vars(a) == vars(b)
    assert ours(1) == ours(1) and ours(1) != ours(2)
    assert ours(1, cache={"a": 1}) == ours(1, cache={"b": 2})  # compare=False
    assert ours(1) != std(1) and (ours(1) == 1) is False  # another class: not equal
    assert ours(1).tags is not ours(1).tags  # a factory per instance
    assert ours.kind == "point" and [f.name for f in lite.fields(ours)] == [
        f.name for f in dataclasses.fields(std)
    ]
    with pytest.raises(TypeError):
        ours()  # x is required
    with pytest.raises(TypeError):
        ours(1, nope=2)


def test_hashing_follows_the_standard_library_rules():
    def body(dataclass, field):
        @dataclass
        class Key:
            """A key."""

            a: int
            b: str = "x"
            c: dict = field(default_factory=dict, compare=False, hash=False)

        return Key

    for frozen, eq in [(True, True), (False, True), (True, False), (False, False)]:
        std, ours = _both(body, frozen=frozen, eq=eq)
        assert (std.__hash__ is None) == (ours.__hash__ is None), (frozen, eq)
        if frozen and eq:
            assert hash(ours(1, "y", {"z": 1})) == hash(std(1, "y", {"z": 2})) == hash((1, "y"))
        if not eq:
            one = ours(1)
            assert one != ours(1) and one == one and hash(one) == object.__hash__(one)


def test_a_frozen_instance_refuses_changes_with_an_attribute_error():
    _, ours = _both(_point, frozen=True)
    p = ours(1)
    with pytest.raises(lite.FrozenInstanceError) as caught:
        p.x = 2
    assert isinstance(caught.value, AttributeError)
    with pytest.raises(AttributeError):
        del p.y
    with pytest.raises(AttributeError):
        p.other = 1
    assert p.x == 1


@pytest.mark.parametrize("frozen", [False, True])
def test_an_instance_keeps_its_fields_as_the_standard_library_does(frozen):
    """Python 3.11 and 3.12 keep an instance's attributes in compact values until its
    ``__dict__`` is asked for; an ``__init__`` that filled ``self.__dict__`` made a dict object in
    every instance (~130 bytes more, slower attribute reads). The standard library's does not."""

    def body(dataclass, field):
        @dataclass
        class Row:
            """A row: no field holds a dict, so a dict among the referents is the instance's own."""

            uid: str
            number: int = 0

        return Row

    def holds_a_dict(obj):
        return any(type(r) is dict for r in gc.get_referents(obj))

    std, ours = _both(body, frozen=frozen)
    a, b = std("1.2", 3), ours("1.2", 3)
    assert holds_a_dict(b) == holds_a_dict(a)
    assert vars(b) == vars(a) == {"uid": "1.2", "number": 3}


def test_post_init_inheritance_and_methods_of_the_body():
    calls = []

    def body(dataclass, field):
        @dataclass
        class Base:
            """A base."""

            a: int
            b: int = 2

            def __post_init__(self):
                object.__setattr__(self, "total", self.a + self.b)
                calls.append(type(self).__name__)

        @dataclass
        class Child(Base):
            """A child: its fields after the base's, a redefined default."""

            c: int = 3
            b: int = 5

            def __repr__(self):
                return "child!"

        return Child

    std, ours = _both(body, frozen=True)
    assert str(inspect.signature(ours)) == str(inspect.signature(std))
    a, b = std(1), ours(1)
    assert vars(a) == vars(b) == {"a": 1, "b": 5, "c": 3, "total": 6}
    assert repr(b) == "child!"  # the body's own method is kept
    assert calls == ["Child", "Child"]
    assert ours(1) == ours(1, 5, 3) and ours(1) != ours(1, 4)


def test_fields_replace_and_asdict():
    def body(dataclass, field):
        @dataclass
        class Inner:
            """Inner."""

            v: int

        @dataclass
        class Outer:
            """Outer."""

            inner: Inner
            items: list = field(default_factory=list)
            table: dict = field(default_factory=dict)
            pair: tuple = ()

        return Outer, Inner

    (std_outer, std_inner), (outer, inner) = _both(body)
    s = std_outer(std_inner(1), [std_inner(2)], {"k": std_inner(3)}, (std_inner(4), 5))
    o = outer(inner(1), [inner(2)], {"k": inner(3)}, (inner(4), 5))
    assert lite.asdict(o) == dataclasses.asdict(s)
    changed = lite.replace(o, pair=(9,))
    assert changed.pair == (9,) and changed.inner is o.inner and o.pair == (inner(4), 5)
    assert [f.name for f in lite.fields(o)] == ["inner", "items", "table", "pair"]
    assert lite.fields(outer)[1].type == "list"
    with pytest.raises(TypeError):
        lite.fields(object())
    with pytest.raises(TypeError):
        lite.asdict({"a": 1})
    with pytest.raises(TypeError):
        lite.replace(o, nope=1)


def test_what_is_not_supported_is_refused():
    for params in ({"order": True}, {"kw_only": True}, {"unsafe_hash": True}, {"init": False}):
        with pytest.raises(TypeError, match="does not support"):

            @lite.dataclass(**params)
            class A:
                """A."""

                x: int

    with pytest.raises(TypeError, match="InitVar"):

        @lite.dataclass
        class Init:
            """Init."""

            x: InitVar[int]  # noqa: F821 - read as a string, never evaluated

    with pytest.raises(TypeError):
        lite.field(init=False)

    with pytest.raises(ValueError, match="mutable default"):

        @lite.dataclass
        class B:
            """B."""

            x: list = []

    with pytest.raises(TypeError, match="non-default argument"):

        @lite.dataclass
        class C:
            """C."""

            x: int = 1
            y: int

    with pytest.raises(TypeError, match="reserved"):

        @lite.dataclass
        class D:
            """D."""

            self: int

    with pytest.raises(TypeError, match="cannot overwrite"):

        @lite.dataclass(frozen=True)
        class E:
            """E."""

            x: int

            def __setattr__(self, name, value):
                pass


def test_a_field_named_like_a_global_of_the_generated_code_is_its_own_value():
    @lite.dataclass
    class Odd:
        """Field names the generated ``__init__`` also uses for its own globals."""

        dict: int = 1
        object: int = 2
        hash: int = 3

    assert vars(Odd(4, 5)) == {"dict": 4, "object": 5, "hash": 3}


@lite.dataclass(frozen=True, slots=True)
class _FrozenSlots:
    """Frozen, with slots: pickles through its own state methods."""

    a: int
    b: tuple = ()


@lite.dataclass(slots=True)
class _Slots:
    """With slots."""

    a: int
    b: list = lite.field(default_factory=list)


def test_instances_pickle_and_the_classes_of_the_library_are_lite():
    from DICOMPlusLib.loading.models import Frame
    from DICOMPlusLib.network.models import RetrieveOptions
    from DICOMPlusLib.network.nodes import RemoteNode

    for one in (_FrozenSlots(1, (2,)), _Slots(1, [2])):
        assert pickle.loads(pickle.dumps(one)) == one
    frame = Frame("1.2", "/x.dcm", "1.2.840.10008.1.2.1", 100, 50, position=(0.0, 0.0, 1.0))
    assert pickle.loads(pickle.dumps(frame)) == frame and not hasattr(frame, "__dict__")

    options = RetrieveOptions(parallel=3)
    assert pickle.loads(pickle.dumps(options)) == options
    assert lite.replace(options, parallel=1).parallel == 1
    node = RemoteNode.parse("AE@127.0.0.1:104")
    assert pickle.loads(pickle.dumps(node)) == node
    assert not dataclasses.is_dataclass(options)  # made by the lite decorator, not the standard one


@pytest.mark.parametrize("frozen", [False, True])
def test_slots_match_the_standard_library(frozen):
    def body(dataclass, field):
        @dataclass
        class Slice:
            """A slice."""

            uid: str
            position: tuple | None = None
            frame: int = 0

            def moved(self, by):
                return (self.position[0] + by,)

        return Slice

    std, ours = _both(body, frozen=frozen, slots=True)
    assert std.__slots__ == ours.__slots__ == ("uid", "position", "frame")
    a, b = std("1", (1.0,)), ours("1", (1.0,))
    assert not hasattr(b, "__dict__") and b.moved(1) == a.moved(1) == (2.0,)
    assert repr(b).split("(", 1)[1] == repr(a).split("(", 1)[1]
    assert b == ours("1", (1.0,)) and lite.replace(b, frame=2).frame == 2
    assert (
        ours.__qualname__.endswith("Slice") and ours.__init__.__qualname__ == ours.__qualname__ + ".__init__"
    )
    if frozen:
        with pytest.raises(AttributeError):
            b.frame = 3
        assert hash(b) == hash(ours("1", (1.0,)))
    else:
        b.frame = 3
        assert b.frame == 3
    with pytest.raises(AttributeError):
        b.other = 1  # no __dict__


def test_match_args():
    @lite.dataclass(match_args=False)
    class NoMatch:
        """No match args."""

        a: int

    @lite.dataclass
    class Match:
        """Match args."""

        a: int
        b: int = 0

    assert not hasattr(NoMatch, "__match_args__") and Match.__match_args__ == ("a", "b")
    match Match(1, 2):
        case Match(x, y):
            assert (x, y) == (1, 2)


def test_no_module_of_the_library_uses_the_standard_dataclasses():
    """Each class made with the standard ``@dataclass`` costs its command's start ~0.5 ms and the
    first one ~5 ms of imports (``inspect``, ``ast``, ``dis``): the package's classes are all made
    by ``dataclasses_lite``."""
    import ast

    from dicomplus_testing.util import REPO_ROOT

    found = []
    for path in sorted((REPO_ROOT / "DICOMPlusLib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name == "dataclasses" for a in node.names):
                found.append(str(path.relative_to(REPO_ROOT)))
            elif isinstance(node, ast.ImportFrom) and node.module == "dataclasses":
                found.append(str(path.relative_to(REPO_ROOT)))
    assert found == []


def test_what_the_standard_library_refuses_is_refused_too():
    """A ``field()`` without an annotation, and a frozen class mixed with a mutable one by
    inheritance, are errors for the standard library: the same errors here, not a class that
    quietly behaves otherwise."""
    for make in (dataclasses, lite):
        with pytest.raises(TypeError, match="no type annotation"):

            @make.dataclass
            class NoAnnotation:
                """No annotation."""

                x = make.field(default=1)

        @make.dataclass(frozen=True)
        class Frozen:
            """Frozen."""

            a: int

        @make.dataclass
        class Mutable:
            """Mutable."""

            a: int

        with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass"):

            @make.dataclass
            class FromFrozen(Frozen):
                """From frozen."""

                b: int = 0

        with pytest.raises(TypeError, match="cannot inherit frozen dataclass"):

            @make.dataclass(frozen=True)
            class FromMutable(Mutable):
                """From mutable."""

                b: int = 0


def test_an_evaluated_classvar_is_not_a_field():
    namespace: dict = {}
    exec(
        "import typing\n"
        "from DICOMPlusLib.dataclasses_lite import dataclass\n"
        "@dataclass\n"
        "class Counted:\n"
        "    '''Annotations evaluated: no __future__ import in this code.'''\n"
        "    x: int\n"
        "    total: typing.ClassVar[int] = 0\n",
        namespace,
    )
    counted = namespace["Counted"]
    assert [f.name for f in lite.fields(counted)] == ["x"] and counted(1).total == 0
