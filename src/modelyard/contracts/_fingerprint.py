"""Content fingerprints of data sets: the same data gives the same sha256, whatever the object.

pandas' row hashing is vectorised (C) and ignores memory layout, so fingerprinting a
table costs one pass; column names and dtypes are part of the hash, the index is not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from modelyard.contracts._schema import as_frame


def fingerprint(data: Any) -> str:
    """``sha256:<hex>`` of a DataFrame, array, dict of columns, list of records or bytes."""
    h = hashlib.sha256()
    if isinstance(data, bytes | bytearray | memoryview):
        h.update(bytes(data))
        return "sha256:" + h.hexdigest()
    if isinstance(data, np.ndarray) and data.dtype != object:
        arr = np.ascontiguousarray(data)
        h.update(f"ndarray|{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
        return "sha256:" + h.hexdigest()
    frame = as_frame(data)
    header = "|".join(f"{c}:{frame[c].dtype}" for c in frame.columns)
    h.update(f"frame|{len(frame)}|{header}".encode())
    if len(frame.columns):
        rows = pd.util.hash_pandas_object(frame, index=False, categorize=True)
        h.update(rows.to_numpy().tobytes())
    return "sha256:" + h.hexdigest()
