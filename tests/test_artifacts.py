"""Artifact back end contract, run against a local folder and a real S3 server (moto).

Objects are tampered with and listed through the storage itself (the file system, or
boto3 for S3), never through the store under test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelyard
from modelyard.backends.artifacts import (
    ArtifactStore,
    digest_bytes,
    digest_file,
    get_tree,
    open_artifacts,
    put_tree,
)
from modelyard.errors import ConfigError, IntegrityError, InvalidInputError, NotFoundError

OBJECT_NAME = re.compile(r"sha256/([0-9a-f]{2})/(\1[0-9a-f]{62})")


@dataclass
class Backend:
    store: ArtifactStore
    objects: Callable[[], dict[str, bytes]]  # every stored object: relative key -> bytes
    overwrite: Callable[[str, bytes], None]  # replace the stored bytes behind a digest


def _local(root: Path) -> Backend:
    def objects() -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    def overwrite(digest: str, data: bytes) -> None:
        hexpart = digest.removeprefix("sha256:")
        (root / "sha256" / hexpart[:2] / hexpart).write_bytes(data)

    return Backend(open_artifacts(str(root)), objects, overwrite)


def _s3(url: str, endpoint: str) -> Backend:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    bucket, prefix = url.removeprefix("s3://").split("/", 1)

    def objects() -> dict[str, bytes]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        return {
            o["Key"].removeprefix(prefix + "/"): client.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"
            ].read()
            for o in listing.get("Contents", [])
        }

    def overwrite(digest: str, data: bytes) -> None:
        hexpart = digest.removeprefix("sha256:")
        client.put_object(Bucket=bucket, Key=f"{prefix}/sha256/{hexpart[:2]}/{hexpart}", Body=data)

    store = open_artifacts(url, client_kwargs={"endpoint_url": endpoint})
    return Backend(store, objects, overwrite)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return _local(tmp_path / "store")
    return _s3(request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_endpoint"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MISSING = "sha256:" + "0" * 64
MALFORMED = [
    "",
    "abc",
    "sha256:",
    "sha256:xyz",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "md5:" + "a" * 32,
    "sha256:../../" + "a" * 58,
]


# -- the contract, for every back end ---------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"hello", b"", bytes(range(256)) * 5000], ids=["small", "empty", "1mb"]
)
def test_put_then_get_round_trips_and_the_digest_is_sha256(backend: Backend, data: bytes) -> None:
    digest = backend.store.put(data)

    assert digest == sha256(data) == digest_bytes(data)
    assert backend.store.get(digest) == data
    assert backend.store.exists(digest)


def test_objects_are_stored_under_their_digest(backend: Backend) -> None:
    digest = backend.store.put(b"payload")

    hexpart = digest.removeprefix("sha256:")
    assert backend.objects() == {f"sha256/{hexpart[:2]}/{hexpart}": b"payload"}


def test_same_bytes_are_stored_once(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "same.bin"
    source.write_bytes(b"same")

    digests = {
        backend.store.put(b"same"),
        backend.store.put(b"same"),
        backend.store.put_file(source),
    }

    assert digests == {sha256(b"same")}
    assert list(backend.objects().values()) == [b"same"]


def test_put_file_stores_the_file_content(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 << 20))  # larger than one read chunk

    digest = backend.store.put_file(source)

    assert digest == digest_file(source) == sha256(source.read_bytes())
    assert backend.store.get(digest) == source.read_bytes()


def test_get_file_writes_a_verified_copy_and_leaves_no_partial_file(
    backend: Backend, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    digest = backend.store.put(data)
    dest = tmp_path / "out" / "nested" / "copy.bin"

    backend.store.get_file(digest, dest)

    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]


def test_get_file_replaces_an_existing_file(backend: Backend, tmp_path: Path) -> None:
    digest = backend.store.put(b"new")
    dest = tmp_path / "copy.bin"
    dest.write_bytes(b"old content")

    backend.store.get_file(digest, dest)

    assert dest.read_bytes() == b"new"


def test_concurrent_get_file_to_one_destination(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(4 << 20)
    digest = backend.store.put(data)
    dest = tmp_path / "shared" / "copy.bin"

    def fetch() -> None:
        for _ in range(3):
            backend.store.get_file(digest, dest)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(fetch) for _ in range(4)]:
            future.result()  # re-raises a reader's error

    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]


def test_concurrent_puts_of_the_same_bytes_store_one_object(backend: Backend) -> None:
    data = os.urandom(1 << 20)

    with ThreadPoolExecutor(4) as pool:
        digests = set(pool.map(lambda _: backend.store.put(data), range(8)))

    assert digests == {sha256(data)}
    assert list(backend.objects().values()) == [data]


def test_exists_is_false_until_put(backend: Backend) -> None:
    assert not backend.store.exists(sha256(b"later"))

    backend.store.put(b"later")

    assert backend.store.exists(sha256(b"later"))


def test_unknown_digest_is_not_found(backend: Backend, tmp_path: Path) -> None:
    dest = tmp_path / "never.bin"

    with pytest.raises(NotFoundError, match="is not in the store"):
        backend.store.get(MISSING)
    with pytest.raises(NotFoundError):
        backend.store.get_file(MISSING, dest)

    assert not backend.store.exists(MISSING)
    assert not dest.exists()
    assert list(tmp_path.glob(".*partial")) == []


@pytest.mark.parametrize("digest", MALFORMED)
def test_malformed_digest_is_invalid_input(backend: Backend, digest: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="expected sha256:<64 hex>"):
        backend.store.get(digest)
    with pytest.raises(InvalidInputError):
        backend.store.exists(digest)
    with pytest.raises(InvalidInputError):
        backend.store.get_file(digest, tmp_path / "x.bin")


def test_tampered_object_fails_get_with_integrity_error(backend: Backend) -> None:
    digest = backend.store.put(b"original")
    backend.overwrite(digest, b"tampered")

    with pytest.raises(IntegrityError, match="does not match its digest"):
        backend.store.get(digest)


def test_tampered_object_fails_get_file_and_keeps_the_old_file(
    backend: Backend, tmp_path: Path
) -> None:
    digest = backend.store.put(b"original")
    backend.overwrite(digest, b"tampered")
    dest = tmp_path / "dest" / "copy.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")

    with pytest.raises(IntegrityError):
        backend.store.get_file(digest, dest)

    assert dest.read_bytes() == b"previous"
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]


def make_folder(root: Path) -> dict[str, bytes]:
    files = {
        "model.pkl": os.urandom(2048),
        "config.json": b'{"a": 1}',
        "empty.txt": b"",
        "sub/weights.bin": os.urandom(1 << 20),
        "sub/deeper/vocab.txt": "zürich\nparis\n".encode(),
        "sub/deeper/dup.json": b'{"a": 1}',  # same bytes as config.json
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_folder(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_put_tree_get_tree_round_trips_a_nested_folder(backend: Backend, tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src")

    digest, size = put_tree(backend.store, tmp_path / "src")

    assert size == sum(len(b) for b in files.values())
    assert len(backend.objects()) == len(set(files.values())) + 1  # unique files + manifest
    folder = get_tree(backend.store, digest, tmp_path / "cache")
    assert read_folder(folder) == files
    assert get_tree(backend.store, digest, tmp_path / "cache") == folder  # cached
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]


def test_put_tree_is_deterministic_and_shares_files(backend: Backend, tmp_path: Path) -> None:
    make_folder(tmp_path / "one")
    first, _ = put_tree(backend.store, tmp_path / "one")
    stored = len(backend.objects())

    assert put_tree(backend.store, tmp_path / "one")[0] == first
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    (tmp_path / "two" / "extra.txt").write_bytes(b"only in two")
    second, _ = put_tree(backend.store, tmp_path / "two")

    assert second != first
    assert len(backend.objects()) == stored + 2  # the new file and the new manifest


def test_get_tree_of_a_plain_blob_is_an_integrity_error(backend: Backend, tmp_path: Path) -> None:
    digest = backend.store.put(b'{"kind": "file"}')

    with pytest.raises(IntegrityError, match="not a folder manifest"):
        get_tree(backend.store, digest, tmp_path / "cache")


def test_get_tree_with_a_tampered_file_leaves_no_folder(backend: Backend, tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src")
    digest, _ = put_tree(backend.store, tmp_path / "src")
    backend.overwrite(sha256(files["sub/weights.bin"]), b"corrupt")
    cache = tmp_path / "cache"

    with pytest.raises(IntegrityError):
        get_tree(backend.store, digest, cache)

    assert not cache.exists() or list(cache.iterdir()) == []


def test_unknown_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'ftp'.*s3://"):
        open_artifacts("ftp://host/path")


# -- local folder only -------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Backend:
    return _local(tmp_path / "store")


def assert_only_objects(root: Path) -> None:
    """Every file under ``root`` is a finished object whose name is its content's digest."""
    for path in root.rglob("*"):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            match = OBJECT_NAME.fullmatch(rel)
            assert match, f"stray file {rel}"
            assert sha256(path.read_bytes()) == "sha256:" + match.group(2)


def test_local_writes_leave_no_temporary_files(local: Backend, tmp_path: Path) -> None:
    for i in range(5):
        local.store.put(f"blob {i}".encode())
    make_folder(tmp_path / "src")
    put_tree(local.store, tmp_path / "src")
    local.store.put_file(tmp_path / "src" / "model.pkl")

    assert_only_objects(tmp_path / "store")
    assert len(local.objects()) == 5 + 5 + 1


def test_local_put_file_that_fails_midway_leaves_no_object(
    local: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1 << 20))
    real_copyfile = shutil.copyfile

    def copy_half_then_fail(src: str, dst: str) -> None:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read(1 << 19))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        local.store.put_file(source)

    digest = digest_file(source)
    assert not local.store.exists(digest)
    assert local.objects() == {}
    monkeypatch.setattr(shutil, "copyfile", real_copyfile)
    assert local.store.put_file(source) == digest  # a later write is not blocked
    assert local.store.get(digest) == source.read_bytes()
    assert_only_objects(tmp_path / "store")


def test_local_put_that_fails_before_the_rename_leaves_no_object(
    local: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(source: object, target: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="Input/output error"):
        local.store.put(b"data")
    monkeypatch.undo()

    assert not local.store.exists(sha256(b"data"))
    assert local.objects() == {}


def test_local_store_accepts_a_file_url_and_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = open_artifacts(f"file://{tmp_path / 'store'}").put(b"x")
    monkeypatch.chdir(tmp_path)

    assert open_artifacts("store").get(digest) == b"x"


# -- a workspace on S3 -------------------------------------------------------------------


@pytest.mark.s3
def test_workspace_logs_and_reads_artifacts_on_s3(
    tmp_path: Path, s3_bucket: str, s3_endpoint: str
) -> None:
    source = tmp_path / "model"
    files = make_folder(source)
    root = tmp_path / "ws"
    with modelyard.Workspace.init(
        root, artifacts_url=s3_bucket, artifacts_endpoint_url=s3_endpoint
    ) as ws:
        with ws.start_run("train") as run:
            text_digest = run.log_text("hello s3", "notes.txt")
            tree_digest = run.log_artifact(source)
        recorded = {a["path"]: a["digest"] for a in ws.runs.get(run.run_id).artifacts}

    assert recorded == {"notes.txt": text_digest, "model": tree_digest}
    assert not (root / ".modelyard" / "artifacts").exists()  # nothing went to the local default

    # A second workspace configured through the environment reads the same objects.
    environ = {
        "MODELYARD_ARTIFACTS_URL": s3_bucket,
        "MODELYARD_ARTIFACTS_ENDPOINT_URL": s3_endpoint,
    }
    with modelyard.Workspace(root, environ=environ) as ws2:
        assert ws2.artifacts.get(text_digest) == b"hello s3"
        assert read_folder(get_tree(ws2.artifacts, tree_digest, tmp_path / "cache")) == files
    assert (
        _s3(s3_bucket, s3_endpoint).objects()[f"sha256/{text_digest[7:9]}/{text_digest[7:]}"]
        == b"hello s3"
    )


def test_a_manifest_path_that_leaves_the_folder_is_refused(tmp_path: Path) -> None:
    """A crafted folder manifest cannot write outside the cache it is fetched into."""
    import json

    from modelyard.backends.artifacts import get_tree, open_artifacts
    from modelyard.errors import IntegrityError

    store = open_artifacts(str(tmp_path / "store"))
    blob = store.put(b"payload")
    for bad in ("../escaped.txt", "/etc/escaped.txt", "a/../../escaped.txt"):
        files = {bad: {"digest": blob, "size": 7}}
        manifest = store.put(json.dumps({"kind": "tree", "files": files}).encode())
        with pytest.raises(IntegrityError, match="leaves the folder"):
            get_tree(store, manifest, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
