"""Building pydantic models without validation, for values the runtime typed itself.

The runtime makes four events per step and, at the end, a report record per step and
attempt; pydantic's validating constructor is most of the cost of each. `construct(cls,
fields)` gives the same model instance (same fields, defaults, serialisation) about three
times faster. It is only for trusted values: anything else goes through `cls(**fields)`.
"""

from __future__ import annotations

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
