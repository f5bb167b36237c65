"""Replacing methods of moto's classes, and putting the originals back (each patch module's uninstall)."""

from __future__ import annotations

from typing import Any


class MethodPatches:
    """Replace attributes of moto's classes and restore them, newest first."""

    def __init__(self) -> None:
        self._saved: list[tuple[type, str, bool, object]] = []

    @property
    def active(self) -> bool:
        return bool(self._saved)

    def replace(self, owner: type, name: str, new: object) -> Any:
        """Set ``owner.name = new``; returns the previous value (inherited or own; ``None`` if absent)."""
        previous = getattr(owner, name, None)
        self._saved.append((owner, name, name in owner.__dict__, owner.__dict__.get(name)))
        setattr(owner, name, new)
        return previous

    def restore(self) -> None:
        while self._saved:
            owner, name, had_own, value = self._saved.pop()
            if had_own:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
