"""Contracts: Schema and Field, validation, and data-set fingerprints."""

from modelyard.contracts._fingerprint import fingerprint
from modelyard.contracts._schema import DTYPES, DType, Field, Schema, as_frame
from modelyard.contracts._validate import RecordValidator, validate_frame

__all__ = [
    "DTYPES",
    "DType",
    "Field",
    "RecordValidator",
    "Schema",
    "as_frame",
    "fingerprint",
    "validate_frame",
]
