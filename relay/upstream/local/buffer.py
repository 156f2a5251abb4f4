"""The local server's input audio buffer: what the client appended and nobody has
committed yet, addressed by absolute byte offset since the session began."""

from __future__ import annotations


class InputBuffer:
    """The input audio buffer, addressed by absolute byte offset since the session began."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # absolute offset of self._data[0]

    @property
    def end(self) -> int:
        """Absolute offset just past the last byte appended."""
        return self._start + len(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def append(self, pcm: bytes) -> None:
        """Add audio at the end."""
        self._data += pcm

    def slice(self, start: int, end: int) -> bytes:
        """Bytes between two absolute offsets (clamped to what is held)."""
        lo = max(start - self._start, 0)
        hi = max(min(end - self._start, len(self._data)), lo)
        return bytes(self._data[lo:hi])

    def drop_before(self, offset: int) -> None:
        """Forget audio before an absolute offset."""
        cut = min(max(offset - self._start, 0), len(self._data))
        del self._data[:cut]
        self._start += cut

    def clear(self) -> None:
        """Forget everything held."""
        self.drop_before(self.end)
