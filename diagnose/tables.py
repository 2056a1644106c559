"""Declared tables (a spec's sections, a run's fit and monitor arguments) and their one-line errors.

A table is a pydantic model (:class:`Table`): every key declared, none other taken,
integers and flags strictly of their type. :func:`validate` checks a dict of tables
against a schema and turns pydantic's first problem into one line naming the
section, the key and what it takes (a :class:`~diagnose.errors.ConfigError`: exit
status 2 on the command line, no traceback).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnose.errors import ConfigError

__all__ = ["Table", "PositiveInt", "Flag", "validate"]

PositiveInt = Optional[Annotated[int, Field(strict=True, ge=1)]]  # not a bool, not a float
Flag = Optional[Annotated[bool, Field(strict=True)]]


class Table(BaseModel):
    """A table of a spec: every key declared, none other taken, values of their declared type."""

    model_config = ConfigDict(extra="forbid")
    # Keys a user may expect here that the table does not take on purpose, each with why and what to do instead.
    refused: ClassVar[dict[str, str]] = {}

    def given(self) -> dict:
        """The keys the table was given, with their values."""
        return self.model_dump(exclude_unset=True)


def validate(schema: type[BaseModel], raw: dict, sections: str):
    """``raw`` checked against ``schema`` (its fields: tables, or ``dict`` for free ones); the first problem
    as one line.

    Args:
        schema: the sections, each a :class:`Table` or ``dict``.
        raw: the dict to check.
        sections: the valid sections, for the error naming an unknown one.

    Raises:
        ConfigError: an unknown section or key, a section that is not a table, a value of
            the wrong type, in one line naming the valid keys or the type wanted.
    """
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(schema, exc.errors()[0], sections)) from None


def _one_line(schema: type[BaseModel], error: dict, sections: str) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    section = loc[0]
    if len(loc) == 1:
        if kind == "extra_forbidden":
            return f"unknown spec section [{section}]; valid sections: {sections}"
        return f"spec section [{section}] must be a table"
    key = ".".join(str(part) for part in loc[1:])
    table = getattr(schema.model_fields[section].annotation, "refused", {})
    if kind == "extra_forbidden" and key in table:
        return f"[{section}] {key} is not taken: {table[key]}"
    if kind == "extra_forbidden":
        valid = sorted(getattr(schema.model_fields[section].annotation, "model_fields", {}))
        return f"unknown key '{key}' in [{section}]; valid keys: {', '.join(valid)}"
    if kind.startswith("bool"):
        return f"[{section}] {key} must be true or false, got {value!r}"
    if kind.startswith("int") or kind == "greater_than_equal":
        return f"[{section}] {key} must be a positive integer, got {value!r}"
    return f"[{section}] {key}: {error['msg'].lower()}, got {value!r}; fix it in the spec"
