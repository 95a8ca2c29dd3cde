"""Signals as exceptions, so an interrupted command cleans up as a failed one does."""
from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def terminate_as_interrupt(message: str = "terminated; unfinished outputs were removed"):
    """SIGTERM → :class:`geosr.errors.Interrupted` (``message``) in the main thread (exit
    143), so temporary outputs are removed exactly as for Ctrl-C (SIGINT → KeyboardInterrupt,
    exit 130). Every command runs under it (``main.LazyGroup``); a command that can say more
    (``upscale``: nothing was written) runs under its own, inner one.

    Only the first signal counts: it starts the cleanup and the process's way out, and every
    later SIGINT/SIGTERM (Ctrl-C pressed again, a supervisor repeating SIGTERM) is ignored from
    then on, so it cannot cut the cleanup short or abort interpreter shutdown."""
    from geosr.errors import Interrupted

    sigs = (signal.SIGINT, signal.SIGTERM)

    def first_only() -> None:
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN)

    def on_term(signum, frame):
        first_only()
        raise Interrupted(message, signum=signum)

    def on_int(signum, frame):
        first_only()
        raise KeyboardInterrupt

    try:
        old = {sig: signal.getsignal(sig) for sig in sigs}
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_int)
    except ValueError:  # not the main thread (e.g. inside a test runner thread)
        yield
        return
    try:
        yield
    except BaseException:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            raise  # interrupted: the process is on its way out, keep ignoring signals
        for sig, handler in old.items():
            signal.signal(sig, handler)
        raise
    else:
        for sig, handler in old.items():
            signal.signal(sig, handler)
