"""Convert between flyteidl2 literals and native Python values.

    flyteidl2 literal                   Python value
    ----------------------------------  ---------------------------------------------------
    Primitive.integer                   int (int64 range)
    Primitive.float_value               float
    Primitive.string_value              str
    Primitive.boolean                   bool
    Primitive.datetime                  datetime, timezone-aware UTC, to the microsecond
                                        (a naive datetime is taken to be UTC on write)
    Primitive.duration                  timedelta (on write: under 2**53 µs, about 285
                                        years, and negative ones in whole seconds: what
                                        betterproto2 0.10 encodes correctly)
    Scalar.none_type                    None
    Scalar.binary                       bytes (its tag is dropped on read, empty on write)
    Scalar.generic                      dict on read (Struct numbers are floats once on
                                        the wire); a flyteproto Struct on write
    Scalar.structured_dataset           StructuredDatasetRef(uri, format)
    Scalar.blob                         BlobRef(uri, format, multipart)
    Scalar.union                        the inner value, converted (read only)
    LiteralCollection                   list (list or tuple on write)
    LiteralMap                          dict (any Mapping with str keys on write)
    Literal                             passed through unchanged on write

Offloaded literals, Scalar.error, Scalar.schema and literals with nothing set raise
LiteralConversionError. Literal.hash, metadata and artifact_id are ignored on read.
A connector that needs something this table lacks builds the Literal itself.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import betterproto2

from flyteproto.flyteidl2.core import (
    Binary,
    Blob,
    BlobMetadata,
    BlobType,
    BlobTypeBlobDimensionality,
    Error,
    Literal,
    LiteralCollection,
    LiteralMap,
    Primitive,
    Scalar,
    StructuredDataset,
    StructuredDatasetMetadata,
    StructuredDatasetType,
    Void,
)
from flyteproto.flyteidl2.task import Inputs, NamedLiteral, Outputs
from flyteproto.google.protobuf import Struct

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MICROSECOND = dt.timedelta(microseconds=1)
# betterproto2 0.10's Duration.from_timedelta divides microseconds by a float.
_MAX_DURATION_MICROSECONDS = 2**53


class LiteralConversionError(ValueError):
    """A literal or value that cannot be converted; the message says where it sits."""


@dataclass(frozen=True)
class StructuredDatasetRef:
    """A structured dataset by reference, e.g. ``bq://project:dataset.table``."""

    uri: str
    format: str = ""


@dataclass(frozen=True)
class BlobRef:
    """A file (``multipart=False``) or a directory (``multipart=True``) by reference."""

    uri: str
    format: str = ""
    multipart: bool = False


def literal_to_native(literal: Literal) -> Any:
    """Return the Python value of ``literal``, following the module's table.

    Errors: LiteralConversionError for the kinds the table does not cover.
    """
    return _to_native(literal, "literal")


def inputs_to_native(inputs: Inputs | None) -> dict[str, Any]:
    """Return ``{name: value}`` for the task inputs; ``None`` gives ``{}``.

    Errors: LiteralConversionError, naming the input, for a duplicate name, a missing
    literal or a literal that ``literal_to_native`` rejects.
    """
    values: dict[str, Any] = {}
    if inputs is None:
        return values
    for named in inputs.literals:
        path = f"input {named.name!r}"
        if named.name in values:
            raise _error(path, "duplicate input name")
        if named.value is None:
            raise _error(path, "named literal has no value")
        values[named.name] = _to_native(named.value, path)
    return values


def native_to_literal(value: Any) -> Literal:
    """Return the literal for ``value``, following the module's table.

    Errors: LiteralConversionError naming the type (and where it sits in ``value``).
    """
    return _to_literal(value, "value")


def native_to_outputs(values: Mapping[str, Any]) -> Outputs:
    """Return task outputs holding one named literal per entry of ``values``, in order.

    Errors: LiteralConversionError, naming the output, as for ``native_to_literal``.
    """
    literals = []
    for name, value in values.items():
        if not isinstance(name, str):
            raise _error("outputs", f"output names must be str, not {_type_name(name)}")
        literals.append(NamedLiteral(name=name, value=_to_literal(value, f"output {name!r}")))
    return Outputs(literals=literals)


# Literal -> native


def _to_native(literal: Literal, path: str) -> Any:
    if literal.scalar is not None:
        return _scalar_to_native(literal.scalar, path)
    if literal.collection is not None:
        items = literal.collection.literals
        return [_to_native(item, f"{path}[{index}]") for index, item in enumerate(items)]
    if literal.map is not None:
        entries = literal.map.literals.items()
        return {key: _to_native(item, f"{path}[{key!r}]") for key, item in entries}
    if literal.offloaded_metadata is not None:
        raise _error(path, "offloaded literals are not supported")
    raise _error(path, "literal has no value")


def _scalar_to_native(scalar: Scalar, path: str) -> Any:
    if scalar.primitive is not None:
        return _primitive_to_native(scalar.primitive, path)
    if scalar.none_type is not None:
        return None
    if scalar.binary is not None:
        return scalar.binary.value
    if scalar.generic is not None:
        return _struct_to_dict(scalar.generic, path)
    if scalar.structured_dataset is not None:
        return _dataset_to_ref(scalar.structured_dataset)
    if scalar.blob is not None:
        return _blob_to_ref(scalar.blob)
    if scalar.union is not None:
        if scalar.union.value is None:
            raise _error(path, "union has no value")
        return _to_native(scalar.union.value, path)
    if scalar.error is not None:
        raise _error(path, _describe_error(scalar.error))
    if scalar.schema is not None:
        raise _error(path, "schema literals are not supported")
    raise _error(path, "scalar has no value")


def _primitive_to_native(primitive: Primitive, path: str) -> Any:
    kind, value = betterproto2.which_one_of(primitive, "value")
    if not kind:
        raise _error(path, "primitive has no value")
    if isinstance(value, dt.datetime):
        return _as_utc(value)
    return value


def _struct_to_dict(struct: Struct, path: str) -> dict[str, Any]:
    try:
        value: dict[str, Any] = struct.to_dict()
    except ValueError as exc:
        raise _error(path, f"malformed generic value: {exc}") from exc
    return value


def _dataset_to_ref(dataset: StructuredDataset) -> StructuredDatasetRef:
    metadata = dataset.metadata
    dataset_type = metadata.structured_dataset_type if metadata is not None else None
    return StructuredDatasetRef(
        uri=dataset.uri, format=dataset_type.format if dataset_type is not None else ""
    )


def _blob_to_ref(blob: Blob) -> BlobRef:
    blob_type = blob.metadata.type if blob.metadata is not None else None
    if blob_type is None:
        return BlobRef(uri=blob.uri)
    multipart = blob_type.dimensionality == BlobTypeBlobDimensionality.MULTIPART
    return BlobRef(uri=blob.uri, format=blob_type.format, multipart=multipart)


def _describe_error(error: Error) -> str:
    return (
        f"error literals are not supported "
        f"(node {error.failed_node_id!r} failed: {error.message!r})"
    )


# Native -> literal


def _to_literal(value: Any, path: str) -> Literal:
    if isinstance(value, Literal):
        return value
    if isinstance(value, list | tuple):
        items = [_to_literal(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return Literal(collection=LiteralCollection(literals=items))
    if isinstance(value, Mapping):
        return Literal(map=LiteralMap(literals=_entries_to_literals(value, path)))
    return Literal(scalar=_to_scalar(value, path))


def _entries_to_literals(value: Mapping[Any, Any], path: str) -> dict[str, Literal]:
    literals: dict[str, Literal] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _error(path, f"map keys must be str, not {_type_name(key)} ({key!r})")
        literals[key] = _to_literal(item, f"{path}[{key!r}]")
    return literals


def _to_scalar(value: Any, path: str) -> Scalar:
    if value is None:
        return Scalar(none_type=Void())
    if isinstance(value, bytes):
        return Scalar(binary=Binary(value=value))
    if isinstance(value, Struct):
        return Scalar(generic=value)
    if isinstance(value, StructuredDatasetRef):
        return Scalar(structured_dataset=_ref_to_dataset(value))
    if isinstance(value, BlobRef):
        return Scalar(blob=_ref_to_blob(value))
    return Scalar(primitive=_to_primitive(value, path))


def _to_primitive(value: Any, path: str) -> Primitive:
    # bool first: it is a subclass of int.
    if isinstance(value, bool):
        return Primitive(boolean=value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _error(path, f"int {value} is outside the int64 range")
        return Primitive(integer=int(value))
    if isinstance(value, float):
        return Primitive(float_value=float(value))
    if isinstance(value, str):
        return Primitive(string_value=value)
    if isinstance(value, dt.datetime):
        return Primitive(datetime=_as_utc(value))
    if isinstance(value, dt.timedelta):
        return Primitive(duration=_check_duration(value, path))
    raise _error(path, f"cannot convert a value of type {_type_name(value)}")


def _check_duration(value: dt.timedelta, path: str) -> dt.timedelta:
    """Refuse what betterproto2 0.10's Duration.from_timedelta would encode wrongly.

    It divides in floating point, and pairs seconds truncated towards zero with nanos
    from Python's floored modulo: -1.5 s goes out as seconds=-1, nanos=+500000000.
    """
    microseconds = value // _MICROSECOND
    if abs(microseconds) >= _MAX_DURATION_MICROSECONDS:
        raise _error(path, f"timedelta of {value.days} days is too long (limit: 2**53 µs)")
    if microseconds < 0 and microseconds % 1_000_000:
        seconds = value.total_seconds()
        raise _error(path, f"negative timedelta of {seconds} s must be whole seconds")
    return value


def _ref_to_dataset(ref: StructuredDatasetRef) -> StructuredDataset:
    dataset_type = StructuredDatasetType(format=ref.format)
    metadata = StructuredDatasetMetadata(structured_dataset_type=dataset_type)
    return StructuredDataset(uri=ref.uri, metadata=metadata)


def _ref_to_blob(ref: BlobRef) -> Blob:
    dimensionality = (
        BlobTypeBlobDimensionality.MULTIPART if ref.multipart else BlobTypeBlobDimensionality.SINGLE
    )
    blob_type = BlobType(format=ref.format, dimensionality=dimensionality)
    return Blob(uri=ref.uri, metadata=BlobMetadata(type=blob_type))


# Shared


def _as_utc(value: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _type_name(value: object) -> str:
    cls = type(value)
    if cls.__module__ == "builtins":
        return repr(cls.__qualname__)
    return repr(f"{cls.__module__}.{cls.__qualname__}")


def _error(path: str, reason: str) -> LiteralConversionError:
    return LiteralConversionError(f"{path}: {reason}")
