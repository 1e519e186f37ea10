"""Validation shared by every config section.

Each section is a frozen dataclass inheriting `Section`; `__post_init__` checks every `Literal`
field against its choices and then calls the section's own `validate()`. Errors are `ValueError`s
that name the field and the valid options, because these values come from users (CLI, Tune, jobs).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin


def literal_choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal[...]` type (also inside `Optional`), else None."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in get_args(tp):
            choices = literal_choices(arg)
            if choices is not None:
                return choices + ((None,) if type(None) in get_args(tp) else ())
    return None


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclasses.dataclass(frozen=True)
class Section:
    """Base of every config section: validates `Literal` fields, then `validate()`.

    `LEGACY` (a class attribute, {field: value}): what a saved config that lacks the field meant, for
    a field whose default changed when it was added; `from_dict` uses it in place of the default, so
    checkpoints written before the field existed rebuild the model they were trained as.
    """

    LEGACY: typing.ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            choices = literal_choices(hints[f.name])
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ValueError(
                    f"{self.section_name()}.{f.name}={value!r} is not valid; "
                    f"choose one of {', '.join(repr(c) for c in choices)}"
                )
        self.validate()

    @classmethod
    def section_name(cls) -> str:
        return getattr(cls, "NAME", cls.__name__)

    def validate(self) -> None:
        """Section-specific checks; raise `ValueError` naming the field."""

    def _require(self, ok: bool, field: str, message: str) -> None:
        if not ok:
            raise ValueError(f"{self.section_name()}.{field}={getattr(self, field)!r}: {message}")
