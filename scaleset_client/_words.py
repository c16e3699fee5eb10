"""``Word``: the base of the package's string enums (interrupt reasons, operation classes).

A member is a ``str`` equal to its word, so it compares, hashes, keys a dict and goes into JSON as
the plain word; ``str()`` and f-strings give the word on every Python version (``enum.StrEnum``
is 3.11+, and a plain ``(str, Enum)`` prints ``Class.MEMBER`` in f-strings on 3.11).
"""

from __future__ import annotations

import enum

__all__ = ["Word"]


class Word(str, enum.Enum):
    """A string enum whose members read as their words."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
