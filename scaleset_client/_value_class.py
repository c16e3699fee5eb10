"""Immutable value classes that cost what they are used for: the machinery under the models.

A class derived from ``ValueClass`` and declared like a dataclass (annotated fields, defaults,
``value_field(...)``) keeps its field values in one tuple, in field order, and each field is a
read-only property over it: parsers build the tuple and the object in two C calls (``make``),
instead of one ``object.__setattr__`` per field as a frozen dataclass does. It behaves like the
frozen dataclass it replaces: keyword or positional construction with the same defaults,
equality by class and fields, hashing, a ``repr`` (fields declared ``repr=False`` left out),
``FrozenInstanceError`` on assignment, pickling, ``__match_args__``, and
``dataclasses.fields``/``asdict``/``replace``, whose field table is built on first use, so
importing a model module needs neither ``dataclasses`` nor ``inspect``.

Issue 28 also moved the settings (``ResilienceConfig``, ``ListenerConfig``, ...) and the
per-call records (``CallPolicy``, ``Decision``, ...) here, because a ``@dataclass`` costs ~0.45 ms
to create (it compiles its methods) and importing ``dataclasses`` pulls in ``inspect``, ``ast``
and ``dis``: a cron run paid for both. For them a value class also has what those dataclasses
used: ``__post_init__`` (run after the fields are set, as a validation hook: it cannot assign),
``value_field(compare=False)`` (a field left out of ``==`` and ``hash``), and an ``__init__``
written by hand for a class built on every call (``set_fields``: 2-4x faster than the
generic one); its parameters are checked against the declared fields when the class is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

__all__ = ["ValueClass", "field_values", "make", "set_fields", "value_field"]

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kwargs: Any) -> Any:
        return lambda cls: cls

_T = TypeVar("_T")


class _Required:
    """The default of a field that has none."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()


class _FieldSpec:
    """What ``value_field(...)`` declares: a default or a factory of one, whether ``repr`` shows it,
    and whether ``==`` and ``hash`` read it."""

    __slots__ = ("compare", "default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return "<factory>"  # as ``inspect.signature`` shows a dataclass's default factory


def value_field(*, default: Any = _REQUIRED, default_factory: Callable[[], Any] | None = None,
                repr: bool = True, compare: bool = True) -> Any:
    """``dataclasses.field`` for value classes: a default, a factory of one, left out of ``repr``,
    or left out of ``==`` and ``hash`` (``compare=False``)."""
    return _FieldSpec(default, default_factory, repr, compare)


def _property(index: int) -> property:
    def get(self: Any) -> Any:
        return self._v[index]

    return property(get)


class _DataclassFields:
    """``__dataclass_fields__`` on first use, so ``dataclasses.fields``, ``asdict``, ``replace``
    and ``is_dataclass`` keep working without ``dataclasses`` being imported by the models."""

    def __init__(self) -> None:
        self._built: dict[type, Any] = {}

    def __get__(self, obj: object, cls: Any) -> Any:
        built = self._built.get(cls)
        if built is None:
            import dataclasses

            specs = [(name, annotation,
                      dataclasses.field(default_factory=default.default_factory, repr=shown, compare=compared)
                      if isinstance(default, _FieldSpec) else
                      dataclasses.field(repr=shown, compare=compared) if default is _REQUIRED else
                      dataclasses.field(default=default, repr=shown, compare=compared))
                     for name, default, shown, compared, annotation in zip(
                         cls._FIELDS, cls._DEFAULTS, cls._REPR, cls._COMPARE, cls._ANNOTATIONS, strict=True)]
            shadow: Any = dataclasses.make_dataclass(cls.__name__, specs, frozen=True)
            built = self._built[cls] = shadow.__dataclass_fields__
        return built


class _Signature:
    """``__signature__`` on first use (``inspect.signature``, ``help``), without importing ``inspect``."""

    def __get__(self, obj: object, cls: Any) -> Any:
        import inspect

        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([
            inspect.Parameter(name, kind, annotation=annotation) if default is _REQUIRED else
            inspect.Parameter(name, kind, annotation=annotation, default=default)
            for name, default, annotation in zip(cls._FIELDS, cls._DEFAULTS, cls._ANNOTATIONS, strict=True)])


def _frozen(message: str) -> AttributeError:
    import dataclasses  # only on this error path: the error users of frozen dataclasses catch

    return dataclasses.FrozenInstanceError(message)


@dataclass_transform(frozen_default=True, field_specifiers=(value_field,))
class ValueClass:
    """The base of every model: field values in one tuple, read through properties."""

    __slots__ = ("_v",)
    _v: tuple[Any, ...]
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    _DEFAULTS: ClassVar[tuple[Any, ...]] = ()  # per field: a value, a _FieldSpec (factory), or _REQUIRED
    _REPR: ClassVar[tuple[bool, ...]] = ()
    _COMPARE: ClassVar[tuple[bool, ...]] = ()
    _KEY: ClassVar[tuple[int, ...] | None] = None  # the compared fields' indexes; None: all of them
    _POST_INIT: ClassVar[bool] = False
    _ANNOTATIONS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields, defaults, shown, compared, annotations = (list(cls._FIELDS), list(cls._DEFAULTS), list(cls._REPR),
                                                          list(cls._COMPARE), list(cls._ANNOTATIONS))
        # the class's own annotations, read as they are (``inspect.get_annotations`` would import inspect)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            default = cls.__dict__.get(name, _REQUIRED)
            repr_ = compare = True
            if isinstance(default, _FieldSpec):
                repr_, compare = default.repr, default.compare
                default = default if default.default_factory is not None else default.default
            if name in fields:
                raise TypeError(f"{cls.__name__}.{name}: a field cannot be redeclared")
            fields.append(name)
            defaults.append(default)
            shown.append(repr_)
            compared.append(compare)
            annotations.append(str(annotation))
            setattr(cls, name, _property(len(fields) - 1))
        cls._FIELDS, cls._DEFAULTS, cls._REPR, cls._COMPARE, cls._ANNOTATIONS = (
            tuple(fields), tuple(defaults), tuple(shown), tuple(compared), tuple(annotations))
        cls._KEY = None if all(compared) else tuple(i for i, c in enumerate(compared) if c)
        cls._POST_INIT = hasattr(cls, "__post_init__")
        if "__init__" in cls.__dict__:
            if cls._POST_INIT:  # a written-out __init__ would skip it silently
                raise TypeError(f"{cls.__name__}: a written-out __init__ and __post_init__ together; "
                                "validate in the __init__")
            _check_init(cls)
        setattr(cls, "__match_args__", cls._FIELDS)  # noqa: B010  (mypy: not assignable in the class body)
        setattr(cls, "__dataclass_fields__", _DataclassFields())  # noqa: B010
        setattr(cls, "__signature__", _Signature())  # noqa: B010

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = self.__class__
        names = cls._FIELDS
        if len(args) > len(names):
            raise TypeError(f"{cls.__qualname__}.__init__() takes {len(names) + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        if not kwargs and len(args) == len(names):  # every field given in order: nothing to look up
            _set_values(self, args)
            if cls._POST_INIT:
                self.__post_init__()  # type: ignore[attr-defined]
            return
        values = list(args)
        defaults = cls._DEFAULTS
        for i in range(len(args), len(names)):
            name = names[i]
            if name in kwargs:
                values.append(kwargs.pop(name))
                continue
            default = defaults[i]
            if default is _REQUIRED:
                raise TypeError(f"{cls.__qualname__}.__init__() missing 1 required argument: {name!r}")
            values.append(default.default_factory() if default.__class__ is _FieldSpec else default)
        if kwargs:
            name = next(iter(kwargs))
            if name in names:
                raise TypeError(f"{cls.__qualname__}.__init__() got multiple values for argument {name!r}")
            raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {name!r}")
        _set_values(self, tuple(values))
        if cls._POST_INIT:
            self.__post_init__()  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise _frozen(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            key = self._KEY
            if key is None:
                same: bool = self._v == _get_values(other)
                return same
            mine, theirs = self._v, _get_values(other)
            return all(mine[i] == theirs[i] for i in key)
        return NotImplemented

    def __hash__(self) -> int:
        key = self._KEY
        if key is None:
            return hash(self._v)
        values = self._v
        return hash(tuple(values[i] for i in key))

    def __repr__(self) -> str:
        cls = self.__class__
        shown = ", ".join(f"{name}={value!r}" for name, value, visible in zip(cls._FIELDS, self._v, cls._REPR,
                                                                               strict=True) if visible)
        return f"{cls.__qualname__}({shown})"

    def __getstate__(self) -> list[Any]:
        return list(self._v)  # the state frozen slotted dataclasses pickled: field values in order

    def __setstate__(self, state: list[Any]) -> None:
        _set_values(self, tuple(state))


_set_values = ValueClass.__dict__["_v"].__set__  # the slot itself, past the frozen __setattr__
_get_values = ValueClass.__dict__["_v"].__get__
_new = object.__new__


# ``set_fields(obj, values)``: store ``values`` (every field, in declaration order) in ``obj``; what a
# hand-written ``__init__`` ends with. It is the slot's own setter (past the frozen ``__setattr__``,
# as the generic ``__init__`` does), not a function around it: one call less on every call's path.
set_fields: Callable[[ValueClass, tuple[Any, ...]], None] = _set_values


def field_values(obj: ValueClass) -> dict[str, Any]:
    """``obj``'s fields by name, in order, not recursed into: ``dataclasses.asdict`` without the
    import, the field table or the deep copy."""
    cls = obj.__class__
    return dict(zip(cls._FIELDS, _get_values(obj), strict=True))


def _check_init(cls: type[ValueClass]) -> None:
    """A hand-written ``__init__`` must take the declared fields, in order, with the declared
    defaults (a field with a factory: any default, the ``__init__`` makes the value); read from
    the code object, so the check imports nothing and costs microseconds."""
    init: Any = cls.__dict__["__init__"]
    code = init.__code__
    params = code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]
    if params != cls._FIELDS:
        raise TypeError(f"{cls.__qualname__}.__init__ takes {params}; the declared fields are {cls._FIELDS}")
    positional, defaults = code.co_argcount - 1, init.__defaults__ or ()
    given = dict(zip(params[positional - len(defaults):positional], defaults, strict=True))
    given.update(init.__kwdefaults__ or {})
    for name, default in zip(cls._FIELDS, cls._DEFAULTS, strict=True):
        if default is _REQUIRED:
            if name in given:
                raise TypeError(f"{cls.__qualname__}.__init__ gives {name!r} a default; the field has none")
        elif name not in given or (default.__class__ is not _FieldSpec and given[name] is not default
                                   and given[name] != default):
            raise TypeError(f"{cls.__qualname__}.__init__: {name!r} must default to {default!r}")


def make(cls: type[_T], values: tuple[Any, ...]) -> _T:
    """A model from its field values in order (the parsers' way: no defaults, no keywords)."""
    model = _new(cls)
    _set_values(model, values)
    return model

