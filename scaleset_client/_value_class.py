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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

__all__ = ["ValueClass", "make", "value_field"]

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
    """What ``value_field(...)`` declares: a default or a factory of one, and whether ``repr`` shows it."""

    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.repr = repr

    def __repr__(self) -> str:
        return "<factory>"  # as ``inspect.signature`` shows a dataclass's default factory


def value_field(*, default: Any = _REQUIRED, default_factory: Callable[[], Any] | None = None,
                repr: bool = True) -> Any:
    """``dataclasses.field`` for the models: a default, a factory of one, or left out of ``repr``."""
    return _FieldSpec(default, default_factory, repr)


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
                      dataclasses.field(default_factory=default.default_factory, repr=shown)
                      if isinstance(default, _FieldSpec) else
                      dataclasses.field(repr=shown) if default is _REQUIRED else
                      dataclasses.field(default=default, repr=shown))
                     for name, default, shown, annotation in zip(
                         cls._FIELDS, cls._DEFAULTS, cls._REPR, cls._ANNOTATIONS, strict=True)]
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
    _ANNOTATIONS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields, defaults, shown, annotations = (list(cls._FIELDS), list(cls._DEFAULTS), list(cls._REPR),
                                                list(cls._ANNOTATIONS))
        # the class's own annotations, read as they are (``inspect.get_annotations`` would import inspect)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            default = cls.__dict__.get(name, _REQUIRED)
            repr_ = True
            if isinstance(default, _FieldSpec):
                repr_ = default.repr
                default = default if default.default_factory is not None else default.default
            if name in fields:
                raise TypeError(f"{cls.__name__}.{name}: a field cannot be redeclared")
            fields.append(name)
            defaults.append(default)
            shown.append(repr_)
            annotations.append(str(annotation))
            setattr(cls, name, _property(len(fields) - 1))
        cls._FIELDS, cls._DEFAULTS, cls._REPR, cls._ANNOTATIONS = (tuple(fields), tuple(defaults), tuple(shown),
                                                                   tuple(annotations))
        setattr(cls, "__match_args__", cls._FIELDS)  # noqa: B010  (mypy: not assignable in the class body)
        setattr(cls, "__dataclass_fields__", _DataclassFields())  # noqa: B010
        setattr(cls, "__signature__", _Signature())  # noqa: B010

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = self.__class__
        names = cls._FIELDS
        if len(args) > len(names):
            raise TypeError(f"{cls.__qualname__}.__init__() takes {len(names) + 1} positional arguments "
                            f"but {len(args) + 1} were given")
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

    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise _frozen(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            same: bool = self._v == _get_values(other)
            return same
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._v)

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


def make(cls: type[_T], values: tuple[Any, ...]) -> _T:
    """A model from its field values in order (the parsers' way: no defaults, no keywords)."""
    model = _new(cls)
    _set_values(model, values)
    return model

