"""The object store for logs, artifacts and caches: a directory (embedded) or any S3.

Keys are slash-separated relative paths. Every key is checked before it reaches the
file system or S3, so no key can escape the store's root or smuggle control characters.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import tempfile
from typing import Iterator, Protocol

from minio import Minio
from minio.error import S3Error

from appliance.config import Config

MAX_KEY_LENGTH = 1024
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class ObjectStoreError(Exception):
    """The object store refused or failed an operation."""


class InvalidKey(ObjectStoreError, ValueError):
    pass


class ObjectNotFound(ObjectStoreError, KeyError):
    pass


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise InvalidKey(f"object key longer than {MAX_KEY_LENGTH} bytes")
    if _BAD_CHARS.search(key):
        raise InvalidKey(f"object key {key!r} contains a control character or backslash")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"object key {key!r} must be a relative path without '.', '..' or empty segments")
    return key


def check_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/") or "x")
    return prefix


class ObjectStore(Protocol):
    address: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, offset: int, length: int) -> bytes: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[str]: ...
    def ping(self) -> None: ...


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range offset={offset} length={length}")


class DirectoryStore:
    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root).resolve()
        self.address = f"directory:{self.root}"

    def _path(self, key: str) -> pathlib.Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: a reader never sees half an object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        _check_range(offset, length)
        try:
            with self._path(key).open("rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path.stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        if not self.root.exists():
            return
        keys = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        # Sorted by the whole key, the order S3 lists in, so both backends agree.
        yield from sorted(keys)

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise ObjectStoreError(f"{self.root} is not writable")


class S3Store:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, region: str, secure: bool):
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, region=region, secure=secure)
        self.bucket = bucket
        self.address = f"{'https' if secure else 'http'}://{endpoint}/{bucket}"
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if not self._bucket_ready:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:  # another process made it first
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    def put(self, key: str, data: bytes) -> None:
        self._ensure_bucket()
        self._client.put_object(self.bucket, check_key(key), io.BytesIO(data), len(data))

    def _read(self, key: str, **kw) -> bytes:
        try:
            response = self._client.get_object(self.bucket, check_key(key), **kw)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFound(key) from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def get(self, key: str) -> bytes:
        return self._read(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        _check_range(offset, length)
        if length == 0:
            return b""
        try:
            return self._read(key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code == "InvalidRange":  # offset at or past the end, as a file read gives b""
                return b""
            raise

    def size(self, key: str) -> int:
        try:
            return self._client.stat_object(self.bucket, check_key(key)).size
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def delete(self, key: str) -> None:
        self._client.remove_object(self.bucket, check_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        if not self._client.bucket_exists(self.bucket):
            return
        # Not every S3 server lists in plain key order (SeaweedFS walks its directories):
        # sort, so listings agree across backends.
        keys = [obj.object_name for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)]
        yield from sorted(keys)

    def ping(self) -> None:
        self._ensure_bucket()


def make_object_store(config: Config) -> ObjectStore:
    if config.objects.backend == "s3":
        return S3Store(
            config.objects.endpoint,
            config.objects.access_key,
            config.objects.secret_key,
            config.objects.bucket,
            region=config.objects.region,
            secure=config.objects.secure,
        )
    return DirectoryStore(config.objects_path)
