"""Opening an fsspec file system from a store's URL, shared by the stores that use one.

``s3://KEY:SECRET@bucket/prefix`` carries its credentials in the URL: they go to s3fs
as ``key`` and ``secret``, not into the bucket name (where botocore would print them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote


def open_filesystem(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """(file system, root path inside it) of ``url``, with ``options`` for fsspec."""
    import fsspec

    plain, found = credentials(url, options)
    fs, root = fsspec.core.url_to_fs(plain, **found)
    return fs, str(root).rstrip("/")


def credentials(url: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``s3://KEY:SECRET@bucket/prefix`` -> (``s3://bucket/prefix``, key and secret added)."""
    scheme, _, rest = url.partition("://")
    bucket, slash, path = rest.partition("/")
    if scheme != "s3" or "@" not in bucket:
        return url, dict(options)
    userinfo, _, bucket = bucket.rpartition("@")
    key, _, secret = userinfo.partition(":")
    found = {"key": unquote(key), "secret": unquote(secret)} if secret else {"key": unquote(key)}
    return f"s3://{bucket}{slash}{path}", {**found, **options}
