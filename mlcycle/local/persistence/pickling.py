"""moto's backends to a file and back: what survives a restart of the embedded AWS.

moto keeps every service's state in plain Python objects (``BackendDict`` → account → region → backend), so
the standard pickler carries nearly all of it. What it cannot carry has no meaning across processes
anyway and is rebuilt: locks come back new and unlocked, weak dictionaries come back as weak dictionaries,
and KMS's asymmetric keys travel as PEM. Step Functions executions are handled by their service module
(their interpreter threads cannot travel; see ``mlcycle.local.stepfunctions.resume``).

All backends go in one pickle so that objects shared between services (an IAM role a function refers to)
stay one object after loading.
"""

from __future__ import annotations

import _thread
import importlib
import io
import pickle
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: Saves one object: what ``__reduce__`` would return.
Reducer = Callable[[Any], Any]

#: The state file's format; a file of another version is refused rather than half-read.
VERSION = 1


def _new_lock(reentrant: bool) -> Any:
    return threading.RLock() if reentrant else threading.Lock()


_RLOCK = type(threading.RLock())
_LOCK = _thread.LockType


def _weak_values(items: list[tuple[Any, Any]]) -> weakref.WeakValueDictionary[Any, Any]:
    return weakref.WeakValueDictionary(items)


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


def _private_key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _defaultdict_of(factory: type, items: list[tuple[Any, Any]]) -> defaultdict[Any, Any]:
    return defaultdict(factory, items)


def _empty_container_factory(obj: defaultdict[Any, Any]) -> type | None:
    """The container type a ``lambda: {}`` (or ``[]``, ``set()``) factory makes: lambdas do not pickle."""
    factory = obj.default_factory
    if factory is None or getattr(factory, "__name__", "") != "<lambda>":
        return None
    sample = factory()
    return type(sample) if type(sample) in (dict, list, set) and not sample else None


def _versioned_keys(kind: Any, versions: list[tuple[str, list[Any]]], state: dict[str, Any]) -> Any:
    store = kind()
    for key, history in versions:
        store.setlist(key, history)
    store.__dict__.update(state)
    return store


def _versioned_key_store() -> type:
    from moto.s3.utils import _VersionedKeyStore

    return _VersionedKeyStore


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, reducers: Mapping[type, Reducer]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._reducers = tuple(reducers.items())

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if isinstance(obj, _versioned_key_store()):
            # S3's keys: a dict of version lists whose items() shows the latest only (pickle's default)
            store: Any = obj
            versions = [(key, list(store.getlist(key))) for key in dict.keys(store)]
            return _versioned_keys, (kind, versions, dict(vars(obj)))
        for base, reduce in self._reducers:
            if isinstance(obj, base):
                return reduce(obj)
        if kind in (_RLOCK, _LOCK):
            return _new_lock, (kind is _RLOCK,)
        if isinstance(obj, defaultdict) and (container := _empty_container_factory(obj)) is not None:
            return _defaultdict_of, (container, list(obj.items()))
        if isinstance(obj, weakref.WeakValueDictionary):
            return _weak_values, (list(obj.items()),)
        if hasattr(obj, "private_bytes") and kind.__module__.startswith("cryptography"):
            return _private_key, (_private_key_pem(obj),)
        return NotImplemented


def _backend_dicts() -> list[Any]:
    from moto.core.base_backend import BackendDict

    return list(BackendDict._instances)  # type: ignore[misc]


def _locate(backend_dict: Any) -> tuple[str, str]:
    """The module and attribute that hold a ``BackendDict`` (``moto.s3.models``, ``s3_backends``)."""
    module = importlib.import_module(backend_dict.backend.__module__)
    for name, value in vars(module).items():
        if value is backend_dict:
            return module.__name__, name
    raise LookupError(f"no module attribute holds moto's {backend_dict.service_name} backends")


def dump_backends(path: Path, extra: dict[str, Any], reducers: Mapping[type, Reducer]) -> int:
    """Write every backend moto has created, with ``extra`` (the services' own records); return the bytes
    written. ``reducers`` save the objects of some classes (and their subclasses) the services' way. The
    file is replaced atomically: a crash while writing keeps the previous state."""
    state = {
        "version": VERSION,
        "backends": {
            _locate(bd): {account: dict(regions) for account, regions in bd.items()}
            for bd in _backend_dicts()
        },
        "extra": extra,
    }
    buffer = io.BytesIO()
    _Pickler(buffer, reducers).dump(state)
    partial = path.with_suffix(".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)
    return len(buffer.getvalue())


def load_backends(path: Path) -> dict[str, Any]:
    """Put the backends of a state file into moto's (which must be empty); return its ``extra``."""
    state = pickle.loads(path.read_bytes())  # our own file, in our own work directory
    if state.get("version") != VERSION:
        raise ValueError(f"{path} holds state of format {state.get('version')}, not {VERSION}: start afresh")
    for (module, name), accounts in state["backends"].items():
        backend_dict = getattr(importlib.import_module(module), name)
        for account, regions in accounts.items():
            account_backends = backend_dict[account]  # registers the BackendDict with moto, for resets
            for region, backend in regions.items():
                dict.__setitem__(account_backends, region, backend)
    extra: dict[str, Any] = state["extra"]
    return extra
