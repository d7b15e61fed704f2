"""The waiting line: first in, first out. Only ids live here; the jobs live in the manager."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class JobQueue:
    def __init__(self) -> None:
        self._ids: deque[str] = deque()

    def push(self, job_id: str) -> None:
        self._ids.append(job_id)

    def pop(self) -> str | None:
        """The job that has waited longest, or None."""
        return self._ids.popleft() if self._ids else None

    def remove(self, job_id: str) -> bool:
        try:
            self._ids.remove(job_id)
        except ValueError:
            return False
        return True

    def position(self, job_id: str) -> int | None:
        """0 = next to run; None = not waiting."""
        try:
            return self._ids.index(job_id)
        except ValueError:
            return None

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))
