"""Where clips, posters and init images live: Django's default storage, the local disk or an S3-compatible store.

The rest of the studio names files by their storage name (`renders/<id>/clip.mp4`) and asks here: is a file there
and how big is it, put a finished local file under a name, and give a short-lived link to one. On the local disk
(`FileSystemStorage`, the embedded default) a finished file is renamed into place, as before; on an object store it
is uploaded and the local copy removed. Nothing here touches the database.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.utils.http import content_disposition_header


class StorageUnavailable(Exception):
    """The storage did not answer (the object store is down, refused the credentials, ...): judge no file."""


def storage() -> Storage:
    """The storage every render file goes through (settings.STORAGES["default"])."""
    return default_storage


def is_local(store: Storage | None = None) -> bool:
    """True when files are on this machine's disk (served by streaming them), False for an object store."""
    # The lazy default_storage answers isinstance() for the storage it wraps.
    return isinstance(store or default_storage, FileSystemStorage)


def _missing(error: Exception) -> bool:
    """True when an object store's error says "no such key" (404), as opposed to the store failing."""
    response = getattr(error, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    return status == 404 or code in ("404", "NoSuchKey", "NotFound")


def stored_size(name: str) -> int | None:
    """The size in bytes of the stored file `name`, or None when there is none; StorageUnavailable when the
    storage cannot say."""
    try:
        return default_storage.size(name)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageUnavailable(str(error)) from error
    except Exception as error:  # botocore's ClientError, EndpointConnectionError, NoCredentialsError, ...
        if _missing(error):
            return None
        raise StorageUnavailable(f"{type(error).__name__}: {error}") from error


def put_file(name: str, source: Path) -> None:
    """Store the finished local file `source` under `name`, replacing what was there, and remove `source`.

    On the local disk this is a rename (atomic: a reader sees the old file or the new one). On an object store the
    upload completes before the object appears under its name (S3 semantics), then the local copy goes. Raises
    OSError (local) or StorageUnavailable (object store) when the file could not be stored; `source` is then kept.
    """
    store = default_storage
    if is_local(store):
        target = Path(store.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    try:
        with open(source, "rb") as handle:
            saved = store.save(name, File(handle, name=Path(name).name))
    except OSError:
        raise
    except Exception as error:
        raise StorageUnavailable(f"{type(error).__name__}: {error}") from error
    if saved != name:  # only when overwriting is off: the row would name a file that is not this one
        raise StorageUnavailable(f"the storage stored {name!r} as {saved!r}: turn file_overwrite on")
    with contextlib.suppress(FileNotFoundError):
        source.unlink()


def signed_url(name: str, content_type: str, *, filename: str = "", as_attachment: bool = False) -> str:
    """A pre-signed GET link to an object-store file, valid STUDIO_MEDIA_URL_SECONDS.

    The store answers it with the type, the download name and `Cache-Control: private, no-cache` the studio would
    have sent: the browser keeps the bytes for this link only and asks the studio (and its access check) again for
    the next one.
    """
    parameters = {"ResponseContentType": content_type, "ResponseCacheControl": "private, no-cache"}
    disposition = content_disposition_header(as_attachment, filename) if filename or as_attachment else None
    if disposition:
        parameters["ResponseContentDisposition"] = disposition
    store: Any = default_storage  # S3Storage.url() takes the link's parameters and lifetime
    return store.url(name, parameters=parameters, expire=settings.STUDIO_MEDIA_URL_SECONDS)
