"""A time budget that is taken once and passed down to every step that may wait."""

from __future__ import annotations

import time
from dataclasses import dataclass

from webhook.errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """An instant on the monotonic clock after which work must stop."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining_s(self) -> float:
        return self.expires_at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def check(self, what: str) -> float:
        """Return the seconds left, or raise ``DeadlineExceeded`` naming ``what`` was cut short."""
        left = self.remaining_s()
        if left <= 0:
            raise DeadlineExceeded(f"{what}: out of time")
        return left
