"""Contracts: Schema and Field, validation, data-set fingerprints and reference profiles."""

from modelyard.contracts._fingerprint import fingerprint
from modelyard.contracts._profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileKind,
    profile,
)
from modelyard.contracts._schema import DTYPES, DType, Field, Schema, as_frame
from modelyard.contracts._validate import RecordValidator, non_finite_message, validate_frame

__all__ = [
    "CategoricalProfile",
    "DTYPES",
    "DType",
    "Field",
    "NumericProfile",
    "Profile",
    "ProfileKind",
    "RecordValidator",
    "Schema",
    "as_frame",
    "fingerprint",
    "non_finite_message",
    "profile",
    "validate_frame",
]
