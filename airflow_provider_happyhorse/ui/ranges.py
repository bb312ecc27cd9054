"""HTTP byte ranges (RFC 9110, one range), decided with no I/O: what a player's seek asks for."""

from __future__ import annotations


class UnsatisfiableRange(Exception):
    """A Range header that names no byte of the file: answer 416."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """
    ``(first, last)`` byte (inclusive) of a ``Range: bytes=...`` header for a file of ``size`` bytes;
    None for no header, another unit or several ranges (answer the whole file).
    """
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first_text, _, last_text = spec.partition("-")
    try:
        if not first_text:  # a suffix: the last N bytes
            suffix = int(last_text)
            if suffix <= 0 or size == 0:
                raise UnsatisfiableRange(header)
            return max(size - suffix, 0), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first < 0 or first >= size or last < first:
        raise UnsatisfiableRange(header)
    return first, min(last, size - 1)
