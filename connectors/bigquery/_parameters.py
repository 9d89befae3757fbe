"""Task inputs as BigQuery query parameters: ``@name`` in the SQL is the input ``name``.

The parameter type comes from the template's interface when it has one (so an empty list or
a None still gets the declared type), else from the Python value:

    Flyte type / Python value           BigQuery parameter type
    ----------------------------------  ------------------------------------------------
    integer / int                       INT64
    float / float                       FLOAT64
    string, enum / str                  STRING
    boolean / bool                      BOOL
    datetime / aware datetime           TIMESTAMP (Flyte datetimes are UTC instants)
    naive datetime, date, time          DATETIME, DATE, TIME
    Decimal                             NUMERIC
    binary / bytes                      BYTES
    struct / dict                       JSON
    collection of the above / list      ARRAY<...>
    optional (union with none)          the other member's type

Durations, datasets, files and nested lists have no parameter form: PermanentError.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from flyteproto.flyteidl2.core import LiteralType, SimpleType, TypedInterface

from .._errors import PermanentError

if TYPE_CHECKING:  # imported on first use (see _client)
    from google.cloud.bigquery import ArrayQueryParameter, ScalarQueryParameter

__all__ = ["QueryParameter", "query_parameters"]

QueryParameter: TypeAlias = "ScalarQueryParameter | ArrayQueryParameter"

_SIMPLE_TYPES = {
    SimpleType.INTEGER: "INT64",
    SimpleType.FLOAT: "FLOAT64",
    SimpleType.STRING: "STRING",
    SimpleType.BOOLEAN: "BOOL",
    SimpleType.DATETIME: "TIMESTAMP",
    SimpleType.BINARY: "BYTES",
    SimpleType.STRUCT: "JSON",
}
#: Checked in order: bool before int (a subclass), datetime before date (a subclass).
_VALUE_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOL"),
    (int, "INT64"),
    (float, "FLOAT64"),
    (str, "STRING"),
    (bytes, "BYTES"),
    (decimal.Decimal, "NUMERIC"),
    (dt.datetime, "TIMESTAMP"),
    (dt.date, "DATE"),
    (dt.time, "TIME"),
    (dict, "JSON"),
)
#: What an untyped None or empty list becomes: BigQuery needs some type.
_FALLBACK_TYPE = "STRING"


def query_parameters(
    inputs: Mapping[str, Any], interface: TypedInterface | None = None
) -> list[QueryParameter]:
    """One named parameter per input, typed as the module's table says.

    Errors: PermanentError naming the input whose value has no parameter form.
    """
    declared = _declared_types(interface)
    return [_parameter(name, value, declared.get(name)) for name, value in inputs.items()]


def _parameter(name: str, value: Any, declared: LiteralType | None) -> QueryParameter:
    from google.cloud.bigquery import ArrayQueryParameter, ScalarQueryParameter

    if isinstance(value, list | tuple):
        element = declared.collection_type if declared is not None else None
        element_type = _declared_scalar(element) or _common_type(name, value)
        return ArrayQueryParameter(name, element_type, [_scalar(name, v) for v in value])
    scalar_type = _declared_scalar(declared) or _value_type(name, value)
    return ScalarQueryParameter(name, scalar_type, _scalar(name, value))


def _declared_types(interface: TypedInterface | None) -> dict[str, LiteralType]:
    if interface is None or interface.inputs is None:
        return {}
    return {
        entry.key: entry.value.type
        for entry in interface.inputs.variables
        if entry.value is not None and entry.value.type is not None
    }


def _declared_scalar(literal_type: LiteralType | None) -> str | None:
    """The BigQuery type of a declared scalar type, or None to look at the value instead."""
    if literal_type is None:
        return None
    if literal_type.simple is not None:
        return _SIMPLE_TYPES.get(literal_type.simple)
    if literal_type.enum_type is not None:
        return "STRING"
    if literal_type.union_type is not None:
        for variant in literal_type.union_type.variants:
            found = _declared_scalar(variant)
            if found is not None:
                return found
    return None


def _value_type(name: str, value: Any) -> str:
    if value is None:
        return _FALLBACK_TYPE
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return "DATETIME"
    for python_type, bigquery_type in _VALUE_TYPES:
        if isinstance(value, python_type):
            return bigquery_type
    raise PermanentError(
        f"input {name!r}: a {type(value).__name__} cannot be a BigQuery query parameter"
    )


def _common_type(name: str, values: list[Any] | tuple[Any, ...]) -> str:
    found = {_value_type(name, v) for v in values if v is not None}
    if len(found) > 1:
        raise PermanentError(f"input {name!r}: list mixes {', '.join(sorted(found))}")
    return found.pop() if found else _FALLBACK_TYPE


def _scalar(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        raise PermanentError(f"input {name!r}: nested lists cannot be BigQuery query parameters")
    return value
