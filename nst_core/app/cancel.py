"""One cancel flag per browser session, so the Cancel button stops that session's run.

Gradio's own ``cancels=`` stops delivering updates, but a sync generator it stops is not always
closed promptly; the flag makes the optimisation loop itself stop.
"""

from __future__ import annotations

import threading


class CancelRegistry:
    """The cancel flag of each session's running comparison."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str) -> threading.Event:
        """A fresh flag for a run the session starts (it replaces the session's previous one)."""
        with self._lock:
            self._events[session] = event = threading.Event()
            return event

    def finish(self, session: str, event: threading.Event) -> None:
        """Forget a finished run's flag (unless a newer run of the session replaced it)."""
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]

    def cancel(self, session: str) -> bool:
        """Set the session's flag; whether it had a run to stop."""
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()
        return event is not None


CANCELS = CancelRegistry()
