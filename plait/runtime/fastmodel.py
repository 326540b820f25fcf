"""Building pydantic models without validation, for values the runtime typed itself.

The runtime makes four events per step and, at the end, a report record per step and
attempt; pydantic's validating constructor is most of the cost of each. `construct(cls,
fields)` gives the same model instance (same fields, defaults, serialisation) about three
times faster. It is only for trusted values: anything else goes through `cls(**fields)`.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class _Blueprint:
    """What `construct` needs of a model class, computed once per class."""

    __slots__ = ("defaults", "extra", "fresh", "names", "required")

    def __init__(self, cls: type[BaseModel]) -> None:
        fields = cls.model_fields
        self.names = frozenset(fields)
        self.required = frozenset(n for n, f in fields.items() if f.is_required())
        # Every field in declaration order (the order of `__dict__` is the order of
        # model_dump, repr and the JSON): required ones hold a placeholder that the given
        # values replace in place. Immutable defaults are shared; mutable ones ({} and [])
        # are made fresh per instance, as pydantic does.
        self.defaults = {n: (None if f.is_required() else f.default)
                         for n, f in fields.items()}
        self.fresh = tuple((n, type(f.default)) for n, f in fields.items()
                           if not f.is_required() and isinstance(f.default, dict | list))
        self.extra = cls.model_config.get("extra") == "allow"


_BLUEPRINTS: dict[type[BaseModel], _Blueprint] = {}
_new_object = object.__new__
_set_attribute = object.__setattr__
# BaseModel's own slots, set through their descriptors: `object.__setattr__` by name looks
# the name up on the class each time (0.3 us per slot; these three, per model, were half
# the cost of `trusted`).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct(cls: type[M], fields: dict[str, Any]) -> M:
    """`cls(**fields)` without validation; `fields` must hold correctly typed values.

    Falls back to the validating constructor when `fields` is not a subset of the class's
    declared fields holding every required one (e.g. the extra fields of a `tool_event`).
    """
    bp = _BLUEPRINTS.get(cls)
    if bp is None:
        bp = _BLUEPRINTS[cls] = _Blueprint(cls)
    given = fields.keys()
    if not (given <= bp.names and bp.required <= given):
        return cls(**fields)
    return trusted(cls, fields)


def trusted(cls: type[M], fields: dict[str, Any]) -> M:
    """`construct` without the field-name check: `fields` are known to be exactly declared
    fields, every required one included (the event bus: the runtime names them)."""
    bp = _BLUEPRINTS.get(cls)
    if bp is None:
        bp = _BLUEPRINTS[cls] = _Blueprint(cls)
    data = bp.defaults.copy()
    for name, factory in bp.fresh:
        data[name] = factory()
    data.update(fields)
    model = _new_object(cls)
    _set_attribute(model, "__dict__", data)
    _set_fields_set(model, set(fields))
    _set_extra(model, {} if bp.extra else None)
    _set_private(model, None)
    return model


_set_dict = BaseModel.__dict__["__dict__"].__set__
_FRESH = object()  # "no value given" for a field whose default is a mutable {} or []
_MAKERS: dict[type[BaseModel], Any] = {}


def maker(cls: type[M]) -> Callable[..., M]:
    """A constructor for `cls` taking its fields as keyword arguments, without validation.

    Generated once per class from `cls.model_fields`, so the field list cannot drift from
    the model: the function builds `__dict__` as one literal in declared order (what
    `trusted` does with a copy, an update and a per-instance fields set, about three times
    slower). Every instance of the class shares one fields set naming every field: an
    assignment's `fields_set.add(name)` then never changes it; only `exclude_unset` dumps
    would notice, and the runtime makes none. Values must be correctly typed (trusted).
    """
    made = _MAKERS.get(cls)
    if made is None:
        made = _MAKERS[cls] = _generate(cls)
    return made


def _generate(cls: type[M]) -> Callable[..., M]:
    fields = cls.model_fields
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in fields):
        return lambda **values: trusted(cls, values)
    ns: dict[str, Any] = {
        "_new": _new_object, "_cls": cls, "_set_dict": _set_dict, "_set_fs": _set_fields_set,
        "_set_extra": _set_extra, "_set_private": _set_private, "_FRESH": _FRESH,
        "_names": set(fields), "_extra_allowed": cls.model_config.get("extra") == "allow"}
    params, items = [], []
    for name, info in fields.items():
        if info.is_required():
            params.append(name)
            items.append(f"{name!r}: {name}")
        elif isinstance(info.default, dict | list):
            ns[f"_d_{name}"] = type(info.default)
            params.append(f"{name}=_FRESH")
            items.append(f"{name!r}: _d_{name}() if {name} is _FRESH else {name}")
        else:
            ns[f"_d_{name}"] = info.default
            params.append(f"{name}=_d_{name}")
            items.append(f"{name!r}: {name}")
    source = (
        f"def make(*, {', '.join(params)}):\n"
        "    model = _new(_cls)\n"
        f"    _set_dict(model, {{{', '.join(items)}}})\n"
        "    _set_fs(model, _names)\n"
        "    _set_extra(model, {} if _extra_allowed else None)\n"
        "    _set_private(model, None)\n"
        "    return model\n")
    # the source holds only the class's own field names (identifiers, checked above)
    exec(compile(source, f"<fastmodel.maker {cls.__name__}>", "exec"), ns)
    made: Callable[..., M] = ns["make"]
    made.__qualname__ = f"maker({cls.__name__})"
    return made
