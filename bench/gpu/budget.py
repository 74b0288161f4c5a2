"""The --budget: the exception that stops a run, and the timer that raises it."""
from __future__ import annotations

import signal
import threading


class BudgetExceeded(BaseException):
    """--budget is spent (a BaseException, so that call_unet's fallback never swallows it)."""


class Alarm:
    """SIGALRM at the budget and every 5 s after it until disarmed (should something turn one BudgetExceeded
    into another error): raises BudgetExceeded. Main thread only, where signals are delivered."""

    def __init__(self, seconds: float):
        self.armed = (seconds > 0 and hasattr(signal, "setitimer")
                      and threading.current_thread() is threading.main_thread())
        if self.armed:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, seconds, 5.0)

    def _fire(self, signum, frame):
        if self.armed:
            raise BudgetExceeded()

    def disarm(self):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
            self.armed = False
