"""The S3 client boundary of the s3 backend: the only module that calls obstore.

:class:`ObjectStore` wraps one ``obstore.store.S3Store`` (one bucket) in the
few operations the backend needs (head, get, put, conditional put, delete,
list), and is the ONE place where the client library's errors become
peerbox's: a missing object is ``None`` (a normal answer, not an error), a
failed precondition is ``False``, and every other failure is
``HostCallError("io_error")`` naming only the script's path and a fixed
reason (the library's own text names the endpoint and the bucket, which a
remote caller must not learn).

Why obstore: measured against SeaweedFS on loopback in one run (1 KiB
objects, 300 requests each, medians): obstore PUT 1.26 ms / GET 0.82 ms,
minio PUT 1.61 ms / GET 1.04 ms, boto3 PUT 2.54 ms / GET 1.82 ms; it
releases the GIL during requests (worker threads overlap), supports
conditional PUTs (``If-Match``, ``If-None-Match: *``), ships type stubs and
depends on nothing but typing-extensions.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from ._errors import HostCallError, io_error

if TYPE_CHECKING:
    from obstore import ObjectMeta

__all__ = ["ObjectStore", "Meta", "Blob", "UNAVAILABLE"]

#: The reason in an ``io_error`` when the S3 service does not answer.
UNAVAILABLE = "the storage service is unavailable"
_REFUSED = "the storage service refused the peer's credentials"
_FAILED = "the storage service failed"

#: A request is retried twice, for at most 3 s in all; connecting waits at most 2 s.
_CONNECT_TIMEOUT = datetime.timedelta(seconds=2)
_REQUEST_TIMEOUT = datetime.timedelta(seconds=15)
_RETRY_TIMEOUT = datetime.timedelta(seconds=3)
_BACKOFF = datetime.timedelta(milliseconds=20)


@dataclass(frozen=True, slots=True)
class Meta:
    """What a HEAD (or a listing) says of one object: ``key``, ``size``, ``etag``, ``modified``
    (whole Unix seconds)."""

    key: str
    size: int
    etag: str | None
    modified: int


@dataclass(frozen=True, slots=True)
class Blob:
    """An object's metadata and content; ``data`` is ``None`` when the object is larger than the
    read was allowed to fetch (then it was not downloaded)."""

    meta: Meta
    data: bytes | None


def _meta(m: ObjectMeta) -> Meta:
    return Meta(m["path"], int(m["size"]), m.get("e_tag"), int(m["last_modified"].timestamp()))


def _fail(path: str, exc: Exception) -> NoReturn:
    """Raise the ``io_error`` for a client failure ``exc`` on the script's ``path``: a fixed
    reason by kind (never ``str(exc)``: it holds the endpoint and bucket)."""
    if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
        reason = _REFUSED
    elif isinstance(exc, (OSError, TimeoutError)) or "error sending request" in str(exc) \
            or "connect" in str(exc).lower() or "timed out" in str(exc).lower():
        reason = UNAVAILABLE
    else:
        reason = f"{_FAILED} ({type(exc).__name__})"
    raise io_error(path, reason) from exc


class ObjectStore:
    """One bucket of an S3 service, through obstore. Thread-safe (obstore is).

    Nothing is contacted when it is made; each method raises
    ``HostCallError("io_error")`` naming ``path`` (the script's path the
    request serves) when the service fails or cannot be reached.
    """

    def __init__(self, *, bucket: str, endpoint: str | None, region: str, access_key: str,
                 secret_key: str) -> None:
        self.bucket = bucket
        self._store = S3Store(
            bucket,
            endpoint=endpoint,
            region=region,
            access_key_id=access_key,
            secret_access_key=secret_key,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "connect_timeout": _CONNECT_TIMEOUT,
                "timeout": _REQUEST_TIMEOUT,
            },
            retry_config={
                "max_retries": 2,
                "retry_timeout": _RETRY_TIMEOUT,
                "backoff": {"init_backoff": _BACKOFF, "max_backoff": _BACKOFF * 5, "base": 2.0},
            },
        )

    def head(self, key: str, path: str) -> Meta | None:
        """The metadata of ``key``, or ``None`` if there is no such object."""
        try:
            return _meta(obstore.head(self._store, key))
        except FileNotFoundError:
            return None
        except Exception as exc:
            _fail(path, exc)

    def get(self, key: str, path: str, max_size: int) -> Blob | None:
        """``key``'s metadata and content (content ``None`` when over ``max_size`` bytes: not
        downloaded), or ``None`` if there is no such object."""
        try:
            result = obstore.get(self._store, key)
            meta = _meta(result.meta)
            if meta.size > max_size:
                return Blob(meta, None)
            return Blob(meta, bytes(result.bytes()))
        except FileNotFoundError:
            return None
        except Exception as exc:
            _fail(path, exc)

    def put(self, key: str, path: str, data: bytes, *, if_match: str | None = None,
            create: bool = False) -> bool:
        """Store ``data`` as ``key`` in one PUT (atomic: readers see the old object or the new).

        ``if_match``: only if the object's ETag is still that; ``create``: only
        if there is no object yet. Returns ``False`` when that precondition
        failed (nothing was written), ``True`` when the object was stored.
        """
        try:
            if if_match is not None:
                obstore.put(self._store, key, data, mode={"e_tag": if_match})
            else:
                obstore.put(self._store, key, data, mode="create" if create else "overwrite")
            return True
        except (PreconditionError, AlreadyExistsError):
            return False
        except Exception as exc:
            _fail(path, exc)

    def delete(self, key: str, path: str) -> None:
        """Delete ``key`` (no error if it is already gone)."""
        try:
            obstore.delete(self._store, key)
        except FileNotFoundError:
            pass
        except Exception as exc:
            _fail(path, exc)

    def children(self, prefix: str | None, path: str) -> tuple[list[Meta], list[str]]:
        """One level under ``prefix`` (``None``: the bucket's top): the objects there and the
        common prefixes (full keys, without the trailing ``/``). The client follows the
        continuation tokens: every page is fetched."""
        try:
            result = obstore.list_with_delimiter(self._store, prefix)
            return [_meta(m) for m in result["objects"]], list(result["common_prefixes"])
        except Exception as exc:
            _fail(path, exc)

    def walk(self, prefix: str | None, path: str, after: str | None = None) -> Iterator[Meta]:
        """Every object under ``prefix``, all levels, in key order, a page (1000 keys) at a time;
        ``after``: only keys greater than it (S3's ``start-after``)."""
        try:
            for page in obstore.list(self._store, prefix, offset=after, chunk_size=1000):
                for m in page:
                    yield _meta(m)
        except HostCallError:
            raise
        except Exception as exc:
            _fail(path, exc)
