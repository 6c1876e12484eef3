"""Contracts: schema inference, field rules, record and frame validation, fingerprints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from modelyard.backends.artifacts import digest_bytes
from modelyard.contracts import Field, RecordValidator, Schema, fingerprint, validate_frame
from modelyard.errors import InvalidInputError, SchemaValidationError


def fields_by_name(schema: Schema) -> dict[str, tuple[str, bool, tuple[object, ...] | None]]:
    return {f.name: (f.dtype, f.nullable, f.categories) for f in schema.fields}


# -- Schema.infer ------------------------------------------------------------------------


def test_infer_from_frame_gives_dtype_nullability_and_categories() -> None:
    frame = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "n_null": pd.array([1, None, 3], dtype="Int64"),
            "x": [0.5, 1.5, 2.5],
            "x_null": [0.5, np.nan, 2.5],
            "flag": [True, False, True],
            "text": ["a", "b", "c"],
            "text_null": ["a", None, "c"],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
            "when_null": pd.to_datetime(["2024-01-01", None, "2024-01-03"], utc=True),
            "city": pd.Categorical(["paris", "rome", "paris"]),
            "level": pd.Categorical([1, 2, 1]),
        }
    )

    schema = Schema.infer(frame)

    assert schema.names == list(frame.columns)
    assert fields_by_name(schema) == {
        "n": ("int64", False, None),
        "n_null": ("int64", True, None),
        "x": ("float64", False, None),
        "x_null": ("float64", True, None),
        "flag": ("bool", False, None),
        "text": ("string", False, None),
        "text_null": ("string", True, None),
        "when": ("datetime", False, None),
        "when_null": ("datetime", True, None),
        "city": ("string", False, ("paris", "rome")),
        "level": ("int64", False, (1, 2)),
    }


def test_inferred_schema_accepts_the_frame_it_came_from() -> None:
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "x": [0.5, np.nan],
            "flag": [True, False],
            "text": ["a", None],
            "when": pd.to_datetime(["2024-01-01", None], utc=True),
            "city": pd.Categorical(["paris", "rome"]),
            "level": pd.Categorical([1, None]),
        }
    )

    schema = Schema.infer(frame)

    pd.testing.assert_frame_equal(validate_frame(schema, frame), frame)


def test_infer_categories_option_lists_observed_values() -> None:
    frame = pd.DataFrame({"city": ["rome", "paris", None, "rome"], "n": [3, 1, 2, 1]})

    schema = Schema.infer(frame, categories=["city", "n"])

    assert schema["city"].categories == ("paris", "rome")
    assert schema["city"].nullable
    assert schema["n"].categories == (1, 2, 3)
    assert json.loads(schema.model_dump_json())  # categories are plain JSON values


def test_infer_from_numpy_array_names_columns_x0_x1() -> None:
    schema = Schema.infer(np.zeros((4, 3), dtype=np.float32))

    assert schema.names == ["x0", "x1", "x2"]
    assert {f.dtype for f in schema.fields} == {"float64"}


def test_infer_from_1d_array_is_one_column() -> None:
    assert fields_by_name(Schema.infer(np.array([1, 2, 3]))) == {"x0": ("int64", False, None)}


def test_infer_rejects_arrays_with_more_than_two_dimensions() -> None:
    with pytest.raises(InvalidInputError, match="2-D array"):
        Schema.infer(np.zeros((2, 2, 2)))


def test_infer_from_records_marks_missing_keys_nullable() -> None:
    records = [{"a": 1, "b": "x", "c": 1.5}, {"a": 2, "c": 2.5}]

    assert fields_by_name(Schema.infer(records)) == {
        "a": ("int64", False, None),
        "b": ("string", True, None),
        "c": ("float64", False, None),
    }


def test_infer_rejects_non_tabular_input() -> None:
    with pytest.raises(InvalidInputError, match="cannot read tabular data from int"):
        Schema.infer(42)


def test_schema_round_trips_through_json() -> None:
    schema = Schema.of(
        Field(name="age", dtype="int64", min=0, max=150),
        Field(name="city", dtype="string", categories=("paris", "rome"), nullable=True),
    )

    assert Schema.model_validate(json.loads(json.dumps(schema.to_json_dict()))) == schema


# -- Field and Schema rules --------------------------------------------------------------


def test_field_min_greater_than_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="min 10.0 is greater than max 1.0"):
        Field(name="age", dtype="int64", min=10, max=1)


def test_field_min_max_only_on_numbers() -> None:
    with pytest.raises(ValueError, match="min/max only apply to int64 and float64"):
        Field(name="name", dtype="string", min=1)


def test_field_empty_categories_are_rejected() -> None:
    with pytest.raises(ValueError, match="categories must not be empty"):
        Field(name="city", dtype="string", categories=())


def test_field_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype"):
        Field(name="x", dtype="int32")


def test_schema_duplicate_field_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="field 'a' is declared twice"):
        Schema.of(Field(name="a", dtype="int64"), Field(name="a", dtype="float64"))


# -- RecordValidator.validate_json -------------------------------------------------------


@pytest.fixture
def validator() -> RecordValidator:
    return RecordValidator(
        Schema.of(
            Field(name="age", dtype="int64", min=0, max=150),
            Field(name="income", dtype="float64", nullable=True),
            Field(name="city", dtype="string", categories=("paris", "rome")),
            Field(name="member", dtype="bool"),
            Field(name="seen", dtype="datetime", nullable=True),
        )
    )


GOOD = {"age": 30, "income": 1.5, "city": "paris", "member": True}


def errors_of(validator: RecordValidator, body: object) -> list[dict[str, object]]:
    raw = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(SchemaValidationError) as info:
        validator.validate_json(raw)
    assert info.value.status == 422
    return [dict(e) for e in info.value.errors]


def test_one_record_gives_columns_and_not_a_list(validator: RecordValidator) -> None:
    columns, many = validator.validate_json(json.dumps(GOOD).encode())

    assert many is False
    assert columns == {
        "age": [30],
        "income": [1.5],
        "city": ["paris"],
        "member": [True],
        "seen": [None],
    }


def test_list_of_records_gives_columns_in_order(validator: RecordValidator) -> None:
    second = {**GOOD, "age": 31, "income": None, "seen": "2024-05-01T12:00:00+02:00"}

    columns, many = validator.validate_json(json.dumps([GOOD, second]))

    assert many is True
    assert columns["age"] == [30, 31]
    assert columns["income"] == [1.5, None]
    assert columns["seen"][1] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_int_is_accepted_for_a_float_field(validator: RecordValidator) -> None:
    columns, _ = validator.validate_json(json.dumps({**GOOD, "income": 2}))

    assert columns["income"] == [2.0]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("age", "30", "got a string ('30'); send an int64 value"),
        ("age", 30.5, "got a number (30.5); send an int64 value"),
        ("age", True, "got a boolean (true); send an int64 value"),
        ("member", "yes", "got a string ('yes'); send a bool value"),
        ("member", 1, "got a number (1); send a bool value"),
        ("income", "1.5", "got a string ('1.5'); send a float64 value"),
        ("seen", "not a date", "datetime"),
    ],
)
def test_wrong_dtype_names_the_field_and_expected_type(
    validator: RecordValidator, field: str, value: object, fragment: str
) -> None:
    errors = errors_of(validator, {**GOOD, field: value})

    assert len(errors) == 1
    assert errors[0]["field"] == field
    assert errors[0]["row"] is None
    assert fragment in str(errors[0]["message"])


def test_naive_timestamp_is_rejected(validator: RecordValidator) -> None:
    errors = errors_of(validator, {**GOOD, "seen": "2024-05-01T12:00:00"})

    assert [(e["field"], "timezone" in str(e["message"])) for e in errors] == [("seen", True)]


def test_missing_field_says_what_to_send(validator: RecordValidator) -> None:
    body = {k: v for k, v in GOOD.items() if k != "age"}

    errors = errors_of(validator, body)

    assert errors == [
        {"field": "age", "message": "required field is missing; send a int64 value", "row": None}
    ]


def test_nullable_field_may_be_missing(validator: RecordValidator) -> None:
    body = {k: v for k, v in GOOD.items() if k != "income"}

    columns, _ = validator.validate_json(json.dumps(body))

    assert columns["income"] == [None]


def test_unknown_field_suggests_the_nearest(validator: RecordValidator) -> None:
    errors = errors_of(validator, {**GOOD, "agee": 3})

    assert errors == [
        {"field": "agee", "message": "unknown field; did you mean 'age'?", "row": None}
    ]


def test_unknown_field_with_no_near_name_says_remove_it(validator: RecordValidator) -> None:
    errors = errors_of(validator, {**GOOD, "zzzzzz": 3})

    assert errors == [{"field": "zzzzzz", "message": "unknown field; remove it", "row": None}]


def test_null_in_non_nullable_field(validator: RecordValidator) -> None:
    errors = errors_of(validator, {**GOOD, "age": None})

    assert [e["field"] for e in errors] == ["age"]
    assert "not null" in str(errors[0]["message"])


def test_value_outside_categories(validator: RecordValidator) -> None:
    errors = errors_of(validator, {**GOOD, "city": "london"})

    assert [e["field"] for e in errors] == ["city"]
    assert "['paris', 'rome']" in str(errors[0]["message"])


@pytest.mark.parametrize(("age", "word"), [(-1, "greater than or equal to 0"), (151, "less")])
def test_value_outside_min_max(validator: RecordValidator, age: int, word: str) -> None:
    errors = errors_of(validator, {**GOOD, "age": age})

    assert [e["field"] for e in errors] == ["age"]
    assert word in str(errors[0]["message"])


def test_bounds_are_inclusive(validator: RecordValidator) -> None:
    columns, _ = validator.validate_json(json.dumps([{**GOOD, "age": 0}, {**GOOD, "age": 150}]))

    assert columns["age"] == [0, 150]


def test_invalid_json_is_one_body_error(validator: RecordValidator) -> None:
    errors = errors_of(validator, '{"age": 3,')

    assert len(errors) == 1
    assert errors[0]["field"] == "body"
    assert str(errors[0]["message"]).startswith("body is not valid JSON")


@pytest.mark.parametrize("body", ["5", '"text"', "null"])
def test_json_that_is_not_an_object_is_rejected(validator: RecordValidator, body: str) -> None:
    assert errors_of(validator, body) == [
        {
            "field": "body",
            "message": "expected a JSON object or a list of JSON objects",
            "row": None,
        }
    ]


def test_empty_list_is_rejected(validator: RecordValidator) -> None:
    assert errors_of(validator, "[]") == [
        {"field": "body", "message": "the list of records is empty", "row": None}
    ]


def test_list_errors_have_one_entry_per_bad_field_with_its_row(
    validator: RecordValidator,
) -> None:
    body = [
        GOOD,
        {**GOOD, "age": "x"},
        {**GOOD, "city": "london", "member": None, "agee": 1},
    ]

    errors = errors_of(validator, body)

    assert sorted((e["row"], e["field"]) for e in errors) == [
        (1, "age"),
        (2, "agee"),
        (2, "city"),
        (2, "member"),
    ]


def test_error_message_names_the_first_problem_and_counts_the_rest(
    validator: RecordValidator,
) -> None:
    with pytest.raises(SchemaValidationError) as info:
        validator.validate_json(json.dumps([GOOD, {**GOOD, "age": -5, "city": "x"}]))

    message = str(info.value)
    assert message.startswith("input row 1, field 'age': ")
    assert message.endswith("(and 1 more)")
    assert info.value.to_dict()["code"] == "validation_failed"


def test_validator_is_reusable_after_an_error(validator: RecordValidator) -> None:
    errors_of(validator, {**GOOD, "age": "x"})

    columns, _ = validator.validate_json(json.dumps(GOOD))

    assert columns["age"] == [30]


def test_int_categories_keep_their_type() -> None:
    validator = RecordValidator(Schema.of(Field(name="level", dtype="int64", categories=(1, 2))))

    assert validator.validate_json('{"level": 2}')[0] == {"level": [2]}
    assert [e["field"] for e in errors_of(validator, {"level": 3})] == ["level"]


# -- validate_frame ----------------------------------------------------------------------


@pytest.fixture
def schema() -> Schema:
    return Schema.of(
        Field(name="age", dtype="int64", min=0, max=150),
        Field(name="income", dtype="float64", nullable=True),
        Field(name="city", dtype="string", categories=("paris", "rome")),
        Field(name="member", dtype="bool"),
    )


@pytest.fixture
def good_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member": [True, False, True],
            "extra": ["dropped", "dropped", "dropped"],
            "city": ["paris", "rome", "rome"],
            "income": [1.0, None, 2.5],
            "age": [20, 30, 40],
        }
    )


def frame_errors(schema: Schema, frame: pd.DataFrame) -> list[dict[str, object]]:
    with pytest.raises(SchemaValidationError) as info:
        validate_frame(schema, frame)
    return [dict(e) for e in info.value.errors]


def test_valid_frame_comes_back_in_schema_order(schema: Schema, good_frame: pd.DataFrame) -> None:
    out = validate_frame(schema, good_frame)

    assert list(out.columns) == ["age", "income", "city", "member"]
    assert out["age"].tolist() == [20, 30, 40]


def test_int_column_is_accepted_for_a_float_field(schema: Schema, good_frame: pd.DataFrame) -> None:
    validate_frame(schema, good_frame.assign(income=[1, 2, 3]))


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("age", ["20", "30", "40"]),
        ("age", [20.5, 30.0, 40.0]),
        ("age", [True, False, True]),
        ("member", [1, 0, 1]),
        ("income", ["a", "b", "c"]),
        ("city", [1, 2, 3]),
    ],
)
def test_frame_wrong_dtype(
    schema: Schema, good_frame: pd.DataFrame, column: str, values: list[object]
) -> None:
    errors = frame_errors(schema, good_frame.assign(**{column: values}))

    assert [e["field"] for e in errors] == [column]
    assert "cast the column" in str(errors[0]["message"])


def test_frame_missing_column(schema: Schema, good_frame: pd.DataFrame) -> None:
    errors = frame_errors(schema, good_frame.drop(columns=["city"]))

    assert errors == [{"field": "city", "message": "required column is missing", "row": None}]


def test_frame_null_in_non_nullable_column_gives_its_row(
    schema: Schema, good_frame: pd.DataFrame
) -> None:
    frame = good_frame.assign(city=["paris", "rome", None]).set_index(pd.Index([7, 8, 9]))

    errors = frame_errors(schema, frame)

    assert errors == [{"field": "city", "message": "null value in a non-nullable column", "row": 2}]


def test_frame_one_entry_per_bad_field_with_rows(schema: Schema, good_frame: pd.DataFrame) -> None:
    frame = good_frame.assign(age=[20, 200, -1], city=["paris", "rome", "london"])

    errors = frame_errors(schema, frame)

    assert [(e["field"], e["row"]) for e in errors] == [("age", 2), ("age", 1), ("city", 2)]
    assert "below the minimum 0" in str(errors[0]["message"])
    assert "above the maximum 150" in str(errors[1]["message"])
    assert "'london'" in str(errors[2]["message"])


def test_frame_rows_are_positions_even_with_nulls_before_them() -> None:
    schema = Schema.of(Field(name="x", dtype="float64", nullable=True, max=1.0))

    errors = frame_errors(schema, pd.DataFrame({"x": [np.nan, 0.5, np.nan, 3.0]}))

    assert [(e["field"], e["row"]) for e in errors] == [("x", 3)]


def test_frame_naive_timestamps_are_rejected() -> None:
    schema = Schema.of(Field(name="t", dtype="datetime"))
    naive = pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])})

    errors = frame_errors(schema, naive)

    assert [e["field"] for e in errors] == ["t"]
    assert "tz_localize" in str(errors[0]["message"])
    validate_frame(schema, naive.assign(t=naive["t"].dt.tz_localize("UTC")))


def test_frame_categorical_column_is_judged_by_its_values() -> None:
    schema = Schema.of(Field(name="level", dtype="int64", categories=(1, 2), nullable=True))

    validate_frame(schema, pd.DataFrame({"level": pd.Categorical([1, None, 2])}))
    errors = frame_errors(schema, pd.DataFrame({"level": pd.Categorical([1, 5])}))
    assert [(e["field"], e["row"]) for e in errors] == [("level", 1)]


# -- fingerprint -------------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": [0.5, np.nan, 1.5], "c": ["x", "y", None]})


def test_fingerprint_is_a_sha256_digest(frame: pd.DataFrame) -> None:
    digest = fingerprint(frame)

    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64


def test_fingerprint_ignores_the_index_and_the_object_identity(frame: pd.DataFrame) -> None:
    reindexed = frame.set_index(pd.Index([10, 20, 30]))

    assert fingerprint(frame) == fingerprint(reindexed)
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) == fingerprint(frame.to_dict("records"))
    assert fingerprint(frame) == fingerprint(frame.to_dict("list"))


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(a=[1, 2, 4]),
        lambda f: f.assign(c=["x", "y", "z"]),
        lambda f: f.rename(columns={"a": "A"}),
        lambda f: f.assign(a=f["a"].astype("float64")),
        lambda f: f.assign(a=f["a"].astype("int32")),
        lambda f: f[["b", "a", "c"]],
        lambda f: f.iloc[::-1],
        lambda f: f.iloc[:2],
        lambda f: f.assign(d=1),
    ],
    ids=["value", "string", "name", "float", "int32", "order", "rows", "fewer", "column"],
)
def test_fingerprint_changes_with_content(
    frame: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    assert fingerprint(change(frame)) != fingerprint(frame)


def test_fingerprint_of_swapped_values_across_columns_differs() -> None:
    one = pd.DataFrame({"a": [1], "b": [2]})
    two = pd.DataFrame({"a": [2], "b": [1]})

    assert fingerprint(one) != fingerprint(two)


def test_fingerprint_of_numpy_arrays() -> None:
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)

    assert fingerprint(arr) == fingerprint(arr.copy())
    assert fingerprint(arr) == fingerprint(np.asfortranarray(arr))  # memory layout is ignored
    assert fingerprint(arr) != fingerprint(arr.reshape(4, 3))
    assert fingerprint(arr) != fingerprint(arr.astype(np.float32))
    changed = arr.copy()
    changed[2, 3] = -1
    assert fingerprint(arr) != fingerprint(changed)


def test_fingerprint_of_bytes_is_their_sha256() -> None:
    data = b"some training data"

    assert fingerprint(data) == digest_bytes(data)
    assert fingerprint(bytearray(data)) == fingerprint(memoryview(data)) == fingerprint(data)
    assert fingerprint(data) != fingerprint(data + b"!")


# -- string lengths -------------------------------------------------------------------------
TEXT = Schema.of(Field(name="text", dtype="string", min_length=1, max_length=10))


def test_field_lengths_only_on_strings_and_in_order() -> None:
    with pytest.raises(ValueError, match="min_length/max_length only apply to string"):
        Field(name="age", dtype="int64", max_length=3)
    with pytest.raises(ValueError, match="min_length 5 is greater than max_length 2"):
        Field(name="text", dtype="string", min_length=5, max_length=2)
    with pytest.raises(ValueError, match="must not be negative"):
        Field(name="text", dtype="string", min_length=-1)


def test_record_text_length_is_checked_inclusively_per_row() -> None:
    validator = RecordValidator(TEXT)
    assert validator.validate_python([{"text": "a"}, {"text": "x" * 10}]) == {
        "text": ["a", "x" * 10]
    }
    with pytest.raises(SchemaValidationError) as caught:
        validator.validate_json(b'[{"text": ""}, {"text": "ok"}, {"text": "12345678901"}]')
    errors = caught.value.errors
    assert [(e["field"], e["row"]) for e in errors] == [("text", 0), ("text", 2)]
    assert "at least 1 character" in errors[0]["message"]
    assert "at most 10 characters" in errors[1]["message"]
    schema = validator.json_schema()
    assert schema["properties"]["text"]["minLength"] == 1
    assert schema["properties"]["text"]["maxLength"] == 10


def test_frame_text_length_names_the_first_bad_row() -> None:
    frame = pd.DataFrame({"text": ["fine", "far too long here"]})
    with pytest.raises(SchemaValidationError, match="longer than 10 characters") as caught:
        validate_frame(TEXT, frame)
    assert caught.value.errors[0]["row"] == 1
    with pytest.raises(SchemaValidationError, match="shorter than 1 characters"):
        validate_frame(TEXT, pd.DataFrame({"text": [""]}))
    round_trip = Schema.model_validate(TEXT.to_json_dict())
    assert round_trip["text"].max_length == 10
