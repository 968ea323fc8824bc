"""The object store on a directory and on a real S3 server (SeaweedFS, credentials enforced)."""

import pytest

from appliance.storage.objects import InvalidKey, ObjectNotFound, make_object_store
from conftest import make_config


@pytest.fixture
def store(tmp_path, objects_values):
    return make_object_store(make_config(tmp_path, **objects_values))


def test_put_get_range_size_delete(store):
    store.put("logs/run-1/job-2/0001.chunk", b"hello\nworld\n")
    assert store.get("logs/run-1/job-2/0001.chunk") == b"hello\nworld\n"
    assert store.get_range("logs/run-1/job-2/0001.chunk", 6, 5) == b"world"
    assert store.get_range("logs/run-1/job-2/0001.chunk", 100, 5) == b""
    assert store.size("logs/run-1/job-2/0001.chunk") == 12
    assert store.exists("logs/run-1/job-2/0001.chunk")
    store.put("logs/run-1/job-2/0001.chunk", b"replaced")
    assert store.get("logs/run-1/job-2/0001.chunk") == b"replaced"
    store.delete("logs/run-1/job-2/0001.chunk")
    assert not store.exists("logs/run-1/job-2/0001.chunk")
    store.delete("logs/run-1/job-2/0001.chunk")  # deleting what is gone is not an error


def test_missing_objects(store):
    with pytest.raises(ObjectNotFound):
        store.get("nope/nothing")
    with pytest.raises(ObjectNotFound):
        store.size("nope/nothing")
    assert not store.exists("nope/nothing")


def test_list_by_prefix_in_key_order(store):
    for key in ("a/2", "a/1", "a-b", "b/1", "a/sub/3"):
        store.put(key, key.encode())
    assert list(store.list("a/")) == ["a/1", "a/2", "a/sub/3"]
    assert list(store.list()) == ["a-b", "a/1", "a/2", "a/sub/3", "b/1"]


def test_binary_and_large_objects(store):
    blob = bytes(range(256)) * 40_000  # ~10 MB
    store.put("artifacts/big.bin", blob)
    assert store.get("artifacts/big.bin") == blob
    assert store.get_range("artifacts/big.bin", 5_000_000, 256) == blob[5_000_000:5_000_256]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a\\b", "a\x00b", "line\nbreak", "x" * 1025])
def test_bad_keys_refused_before_any_io(store, key):
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.get(key)


def test_ping(store):
    store.ping()


def test_directory_store_never_escapes_root(tmp_path):
    store = make_object_store(make_config(tmp_path / "d"))
    store.put("ok/file", b"1")
    assert (tmp_path / "d" / "objects" / "ok" / "file").read_bytes() == b"1"
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "d" / "objects" / "ok").iterdir())


def test_s3_wrong_credentials_are_refused(tmp_path, s3_server):
    config = make_config(tmp_path, objects__backend="s3", objects__endpoint=s3_server.endpoint,
                         objects__access_key=s3_server.access_key, objects__secret_key="wrong-secret",
                         objects__secure=False)
    from minio.error import S3Error

    with pytest.raises(S3Error, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        make_object_store(config).put("x/y", b"z")
