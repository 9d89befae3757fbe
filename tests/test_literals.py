"""Conversions between flyteidl2 literals and native Python values."""

import datetime as dt
from typing import Any

import pytest
from flyteidl2.core import literals_pb2, types_pb2
from flyteidl2.task import common_pb2
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from connectors._literals import (
    BlobRef,
    LiteralConversionError,
    StructuredDatasetRef,
    inputs_to_native,
    literal_to_native,
    native_to_literal,
    native_to_outputs,
)
from flyteproto.flyteidl2.core import (
    Binary,
    Blob,
    Error,
    Literal,
    LiteralCollection,
    LiteralMap,
    LiteralOffloadedMetadata,
    Primitive,
    Scalar,
    Schema,
    StructuredDataset,
    Union,
)
from flyteproto.flyteidl2.task import Inputs, NamedLiteral
from flyteproto.google.protobuf import Struct, Value

MOMENT = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.UTC)


def _wire(literal: Literal) -> Literal:
    """The literal as a peer sees it: serialized, then parsed."""
    return Literal.parse(bytes(literal))


def _typed(value: Any) -> Any:
    """``value`` with each leaf paired with its type and zone: so True != 1, 1.0 != 1."""
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    return (type(value), value, getattr(value, "tzinfo", None))


def _int(value: int) -> Literal:
    return Literal(scalar=Scalar(primitive=Primitive(integer=value)))


def _offloaded() -> Literal:
    return Literal(offloaded_metadata=LiteralOffloadedMetadata(uri="s3://b/k", size_bytes=9))


ROUND_TRIPS = [
    pytest.param(42, id="int"),
    pytest.param(-(2**63), id="int64-min"),
    pytest.param(2**63 - 1, id="int64-max"),
    pytest.param(0, id="zero"),
    pytest.param(2.5, id="float"),
    pytest.param(0.0, id="float-zero"),
    pytest.param(float("inf"), id="float-inf"),
    pytest.param("héllo", id="str"),
    pytest.param("", id="empty-str"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(MOMENT, id="datetime"),
    pytest.param(dt.datetime(1900, 1, 1, tzinfo=dt.UTC), id="datetime-before-epoch"),
    pytest.param(dt.timedelta(days=3, microseconds=7), id="timedelta"),
    pytest.param(dt.timedelta(seconds=-90), id="negative-timedelta"),
    pytest.param(dt.timedelta(microseconds=2**53 - 1), id="longest-timedelta"),
    pytest.param(None, id="none"),
    pytest.param(b"\x00\xffbytes", id="bytes"),
    pytest.param(b"", id="empty-bytes"),
    pytest.param(StructuredDatasetRef("bq://p:d.t", format="parquet"), id="dataset"),
    pytest.param(StructuredDatasetRef("bq://p:d.t"), id="dataset-no-format"),
    pytest.param(BlobRef("s3://b/f.csv", format="csv"), id="file"),
    pytest.param(BlobRef("s3://b/dir/", multipart=True), id="directory"),
    pytest.param([1, 2, 3], id="list"),
    pytest.param([], id="empty-list"),
    pytest.param({"a": 1, "b": "two"}, id="map"),
    pytest.param({}, id="empty-map"),
    pytest.param([[1, 2], [], [None, True]], id="list-of-lists"),
    pytest.param({"m": {"n": {"o": 1.5}}}, id="map-of-maps"),
    pytest.param({"rows": [{"k": [MOMENT, b"x"]}, {}]}, id="maps-and-lists-nested"),
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_round_trip_over_the_wire_preserves_value_and_type(value: Any) -> None:
    result = literal_to_native(_wire(native_to_literal(value)))

    assert _typed(result) == _typed(value)


def test_bool_becomes_boolean_not_integer() -> None:
    scalar = native_to_literal(True).scalar

    assert scalar is not None
    assert scalar.primitive == Primitive(boolean=True)


def test_int_subclass_becomes_plain_int() -> None:
    class Count(int):
        pass

    assert type(literal_to_native(native_to_literal(Count(3)))) is int


def test_int_outside_int64_is_rejected() -> None:
    with pytest.raises(LiteralConversionError, match=r"^value: int 9223372036854775808 is"):
        native_to_literal(2**63)


def test_naive_datetime_is_taken_as_utc() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)

    assert literal_to_native(_wire(native_to_literal(naive))) == naive.replace(tzinfo=dt.UTC)


def test_aware_datetime_reads_back_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    local = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=paris)

    result = literal_to_native(_wire(native_to_literal(local)))

    assert result == local
    assert result.tzinfo is dt.UTC


def test_naive_datetime_in_a_hand_built_literal_reads_as_utc() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)
    literal = Literal(scalar=Scalar(primitive=Primitive(datetime=naive)))

    assert literal_to_native(literal) == naive.replace(tzinfo=dt.UTC)


def test_negative_timedelta_with_a_fraction_of_a_second_is_rejected() -> None:
    # betterproto2 0.10 would send -1.5 s as -0.5 s.
    with pytest.raises(LiteralConversionError) as caught:
        native_to_literal(dt.timedelta(seconds=-1.5))

    assert str(caught.value) == "value: negative timedelta of -1.5 s must be whole seconds"


def test_timedelta_of_2_to_the_53_microseconds_is_rejected() -> None:
    with pytest.raises(
        LiteralConversionError, match=r"^value: timedelta of 104249 days is too long"
    ):
        native_to_literal(dt.timedelta(microseconds=2**53))


def test_tuple_becomes_collection_read_back_as_list() -> None:
    assert literal_to_native(_wire(native_to_literal((1, "a")))) == [1, "a"]


def test_struct_becomes_generic_scalar_read_back_as_dict() -> None:
    struct = Struct.from_dict({"name": "x", "tags": ["a", None, True], "inner": {"ok": False}})

    literal = native_to_literal(struct)

    assert literal.scalar is not None
    assert literal.scalar.generic is struct
    assert literal_to_native(_wire(literal)) == {
        "name": "x",
        "tags": ["a", None, True],
        "inner": {"ok": False},
    }


def test_generic_numbers_read_back_as_float() -> None:
    struct = Struct.from_dict({"n": 3})

    assert _typed(literal_to_native(_wire(native_to_literal(struct)))) == _typed({"n": 3.0})


def test_literal_passes_through_unchanged() -> None:
    literal = _offloaded()

    assert native_to_literal(literal) is literal


def test_literal_inside_a_list_passes_through_unchanged() -> None:
    literal = _int(7)

    collection = native_to_literal(["a", literal]).collection

    assert collection is not None
    assert collection.literals[1] is literal


def test_union_reads_as_its_inner_value() -> None:
    union = Union(value=Literal(collection=LiteralCollection(literals=[_int(1), _int(2)])))

    assert literal_to_native(_wire(Literal(scalar=Scalar(union=union)))) == [1, 2]


def test_union_without_value_is_rejected() -> None:
    with pytest.raises(LiteralConversionError, match=r"^literal: union has no value$"):
        literal_to_native(Literal(scalar=Scalar(union=Union())))


def test_binary_reads_as_its_value_without_the_tag() -> None:
    literal = Literal(scalar=Scalar(binary=Binary(value=b"\x81\xa1a\x01", tag="msgpack")))

    assert literal_to_native(_wire(literal)) == b"\x81\xa1a\x01"


def test_blob_without_metadata_reads_as_single_file_without_format() -> None:
    literal = Literal(scalar=Scalar(blob=Blob(uri="gs://b/f")))

    assert literal_to_native(_wire(literal)) == BlobRef("gs://b/f")


def test_dataset_without_metadata_reads_without_format() -> None:
    literal = Literal(scalar=Scalar(structured_dataset=StructuredDataset(uri="bq://p:d.t")))

    assert literal_to_native(_wire(literal)) == StructuredDatasetRef("bq://p:d.t")


def test_offloaded_literal_is_rejected_naming_input_and_path() -> None:
    inner = Literal(map=LiteralMap(literals={"k": _offloaded()}))
    value = Literal(collection=LiteralCollection(literals=[_int(0), _int(1), inner]))
    inputs = Inputs(literals=[NamedLiteral(name="x", value=value)])

    with pytest.raises(LiteralConversionError) as caught:
        inputs_to_native(inputs)

    assert str(caught.value) == "input 'x'[2]['k']: offloaded literals are not supported"


def test_error_literal_is_rejected_naming_node_and_message() -> None:
    literal = Literal(scalar=Scalar(error=Error(failed_node_id="n1", message="boom")))

    with pytest.raises(LiteralConversionError) as caught:
        literal_to_native(literal)

    assert str(caught.value) == (
        "literal: error literals are not supported (node 'n1' failed: 'boom')"
    )


def test_schema_literal_is_rejected() -> None:
    literal = Literal(scalar=Scalar(schema=Schema(uri="s3://b/s")))

    with pytest.raises(LiteralConversionError, match=r"^literal: schema literals are not"):
        literal_to_native(literal)


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        pytest.param(Literal(), "literal has no value", id="literal"),
        pytest.param(Literal(scalar=Scalar()), "scalar has no value", id="scalar"),
        pytest.param(
            Literal(scalar=Scalar(primitive=Primitive())), "primitive has no value", id="primitive"
        ),
    ],
)
def test_empty_literal_is_rejected(literal: Literal, reason: str) -> None:
    with pytest.raises(LiteralConversionError) as caught:
        literal_to_native(_wire(literal))

    assert str(caught.value) == f"literal: {reason}"


def test_malformed_generic_is_rejected() -> None:
    literal = Literal(scalar=Scalar(generic=Struct(fields={"k": Value()})))

    with pytest.raises(LiteralConversionError, match=r"^literal: malformed generic value"):
        literal_to_native(literal)


def test_unsupported_builtin_type_is_rejected_naming_type_and_path() -> None:
    with pytest.raises(LiteralConversionError) as caught:
        native_to_literal({"a": [1, {2}]})

    assert str(caught.value) == "value['a'][1]: cannot convert a value of type 'set'"


def test_unsupported_type_is_named_with_its_module() -> None:
    with pytest.raises(LiteralConversionError) as caught:
        native_to_literal(dt.date(2024, 1, 1))

    assert str(caught.value) == "value: cannot convert a value of type 'datetime.date'"


def test_non_str_map_key_is_rejected() -> None:
    with pytest.raises(LiteralConversionError) as caught:
        native_to_literal({"a": {1: "x"}})

    assert str(caught.value) == "value['a']: map keys must be str, not 'int' (1)"


def test_conversion_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot convert"):
        native_to_literal(object())


def test_inputs_become_a_dict_by_name() -> None:
    inputs = Inputs(
        literals=[
            NamedLiteral(name="n", value=_int(3)),
            NamedLiteral(name="s", value=native_to_literal(["a"])),
        ]
    )

    assert inputs_to_native(Inputs.parse(bytes(inputs))) == {"n": 3, "s": ["a"]}


def test_no_inputs_become_an_empty_dict() -> None:
    assert inputs_to_native(None) == {}


def test_duplicate_input_name_is_rejected() -> None:
    inputs = Inputs(literals=[NamedLiteral(name="n", value=_int(i)) for i in range(2)])

    with pytest.raises(LiteralConversionError, match=r"^input 'n': duplicate input name$"):
        inputs_to_native(inputs)


def test_named_literal_without_value_is_rejected() -> None:
    with pytest.raises(LiteralConversionError, match=r"^input 'n': named literal has no value$"):
        inputs_to_native(Inputs(literals=[NamedLiteral(name="n")]))


def test_outputs_hold_one_named_literal_per_value_in_order() -> None:
    outputs = native_to_outputs({"z": 1, "a": None})

    assert [(named.name, named.value) for named in outputs.literals] == [
        ("z", native_to_literal(1)),
        ("a", native_to_literal(None)),
    ]


def test_output_error_names_the_output() -> None:
    with pytest.raises(LiteralConversionError) as caught:
        native_to_outputs({"result": [object()]})

    assert str(caught.value) == "output 'result'[0]: cannot convert a value of type 'object'"


def test_non_str_output_name_is_rejected() -> None:
    with pytest.raises(LiteralConversionError, match=r"^outputs: output names must be str"):
        native_to_outputs({1: "x"})  # type: ignore[dict-item]


# Cross-checks against the official flyteidl2 protobuf classes.


def _official_primitive(**fields: Any) -> literals_pb2.Literal:
    return literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(**fields))
    )


def _official_scalar(**fields: Any) -> literals_pb2.Literal:
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(**fields))


def _official_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _official_dataset(uri: str, dataset_format: str) -> literals_pb2.StructuredDataset:
    dataset_type = types_pb2.StructuredDatasetType(format=dataset_format)
    metadata = literals_pb2.StructuredDatasetMetadata(structured_dataset_type=dataset_type)
    return literals_pb2.StructuredDataset(uri=uri, metadata=metadata)


def _official_blob(uri: str, blob_format: str, dimensionality: int) -> literals_pb2.Blob:
    blob_type = types_pb2.BlobType(format=blob_format, dimensionality=dimensionality)
    return literals_pb2.Blob(uri=uri, metadata=literals_pb2.BlobMetadata(type=blob_type))


def _official_collection(*items: literals_pb2.Literal) -> literals_pb2.Literal:
    return literals_pb2.Literal(collection=literals_pb2.LiteralCollection(literals=items))


def _official_map(**items: literals_pb2.Literal) -> literals_pb2.Literal:
    return literals_pb2.Literal(map=literals_pb2.LiteralMap(literals=items))


OFFICIAL = [
    pytest.param(-5, _official_primitive(integer=-5), id="int"),
    pytest.param(0, _official_primitive(integer=0), id="zero"),
    pytest.param(2.5, _official_primitive(float_value=2.5), id="float"),
    pytest.param("s", _official_primitive(string_value="s"), id="str"),
    pytest.param(False, _official_primitive(boolean=False), id="false"),
    pytest.param(
        dt.datetime(2023, 11, 14, 22, 13, 20, 123, tzinfo=dt.UTC),
        _official_primitive(datetime=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_000)),
        id="datetime",
    ),
    pytest.param(
        dt.timedelta(seconds=90, microseconds=5),
        _official_primitive(duration=duration_pb2.Duration(seconds=90, nanos=5000)),
        id="timedelta",
    ),
    pytest.param(
        dt.timedelta(seconds=-7),
        _official_primitive(duration=duration_pb2.Duration(seconds=-7)),
        id="negative-timedelta",
    ),
    pytest.param(None, _official_scalar(none_type=literals_pb2.Void()), id="none"),
    pytest.param(
        b"\x00b", _official_scalar(binary=literals_pb2.Binary(value=b"\x00b")), id="bytes"
    ),
    pytest.param(
        StructuredDatasetRef("bq://p:d.t", format="parquet"),
        _official_scalar(structured_dataset=_official_dataset("bq://p:d.t", "parquet")),
        id="dataset",
    ),
    pytest.param(
        BlobRef("s3://b/d/", format="csv", multipart=True),
        _official_scalar(blob=_official_blob("s3://b/d/", "csv", types_pb2.BlobType.MULTIPART)),
        id="directory",
    ),
    pytest.param(
        BlobRef("s3://b/f"),
        _official_scalar(blob=_official_blob("s3://b/f", "", types_pb2.BlobType.SINGLE)),
        id="file",
    ),
    pytest.param(
        [1, [None]],
        _official_collection(
            _official_primitive(integer=1),
            _official_collection(_official_scalar(none_type=literals_pb2.Void())),
        ),
        id="nested-list",
    ),
    pytest.param(
        {"a": {"b": "c"}, "d": []},
        _official_map(
            a=_official_map(b=_official_primitive(string_value="c")), d=_official_collection()
        ),
        id="nested-map",
    ),
]


@pytest.mark.parametrize(("value", "official"), OFFICIAL)
def test_our_literal_bytes_parse_as_the_official_literal(
    value: Any, official: literals_pb2.Literal
) -> None:
    parsed = literals_pb2.Literal.FromString(bytes(native_to_literal(value)))

    assert parsed == official


@pytest.mark.parametrize(("value", "official"), OFFICIAL)
def test_official_literal_bytes_convert_to_the_native_value(
    value: Any, official: literals_pb2.Literal
) -> None:
    result = literal_to_native(Literal.parse(official.SerializeToString()))

    assert _typed(result) == _typed(value)


def test_official_negative_fractional_duration_converts_to_a_timedelta() -> None:
    duration = duration_pb2.Duration(seconds=-1, nanos=-500_000_000)
    official = _official_primitive(duration=duration)

    result = literal_to_native(Literal.parse(official.SerializeToString()))

    assert result == dt.timedelta(seconds=-1.5)


def test_our_generic_bytes_parse_as_the_official_struct() -> None:
    value = {"s": "x", "n": 1.5, "l": [True, None], "m": {}}

    parsed = literals_pb2.Literal.FromString(bytes(native_to_literal(Struct.from_dict(value))))

    assert parsed == _official_scalar(generic=_official_struct(value))


def test_official_generic_bytes_convert_to_a_dict() -> None:
    value = {"s": "x", "n": 1.5, "l": [True, None], "m": {"k": "v"}}
    official = _official_scalar(generic=_official_struct(value))

    assert literal_to_native(Literal.parse(official.SerializeToString())) == value


def test_official_union_bytes_convert_to_the_inner_value() -> None:
    union = literals_pb2.Union(
        value=_official_primitive(integer=9),
        type=types_pb2.LiteralType(simple=types_pb2.INTEGER),
    )
    official = _official_scalar(union=union)

    assert literal_to_native(Literal.parse(official.SerializeToString())) == 9


def test_official_inputs_bytes_convert_to_a_dict() -> None:
    official = common_pb2.Inputs(
        literals=[
            common_pb2.NamedLiteral(name="a", value=_official_primitive(integer=1)),
            common_pb2.NamedLiteral(name="b", value=_official_collection()),
        ]
    )

    assert inputs_to_native(Inputs.parse(official.SerializeToString())) == {"a": 1, "b": []}


def test_our_outputs_bytes_parse_as_the_official_outputs() -> None:
    outputs = native_to_outputs({"a": 1, "b": None})

    parsed = common_pb2.Outputs.FromString(bytes(outputs))

    assert parsed == common_pb2.Outputs(
        literals=[
            common_pb2.NamedLiteral(name="a", value=_official_primitive(integer=1)),
            common_pb2.NamedLiteral(
                name="b", value=_official_scalar(none_type=literals_pb2.Void())
            ),
        ]
    )
