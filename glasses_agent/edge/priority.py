"""The eyes give way to the ears: seeing runs at a lower CPU priority than hearing.

On two cores the steady perception loop (a frame a second, most of a core for half a
second each) and the look at the wake phrase compete with Whisper at the end of the
wearer's question, which is what the wearer waits for. Linux keeps a nice value per
thread, and a thread starts with its creator's: so the threads that see (the loop, and
the thread pools onnxruntime makes when the vision models are loaded, inside
``in_background``) run at ``BACKGROUND_NICE``, the look a little higher (``LOOK_NICE``),
and the scheduler gives the hearing thread
and Whisper's threads the cores first. Elsewhere (macOS, Windows), or where the value
cannot be set, everything runs at one priority, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BACKGROUND_NICE", "LOOK_NICE", "in_background", "lower_this_thread"]

BACKGROUND_NICE = 10  # CFS weight 110 against 1,024 at 0: about a tenth of a contended core
# The look at the view as a question begins (and the JPEGs): a question about the view may
# wait for it, so it sits between hearing and the steady loop (at 10 it finished 300-400 ms
# after Whisper; at 0 it slowed Whisper on every question: docs/speaking.md).
LOOK_NICE = 5

T = TypeVar("T")


def lower_this_thread(nice: int = BACKGROUND_NICE) -> bool:
    """Run the calling thread at ``nice`` (never raising it back). False where the
    platform keeps no per-thread priority or refuses."""
    if not hasattr(os, "setpriority") or not nice:
        return False
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    return False


def in_background(make: Callable[[], T], nice: int = BACKGROUND_NICE) -> T:
    """``make()`` on a thread at ``nice``, so that the threads it starts (onnxruntime's
    pools, made when a session is) run there too; its result, or its exception."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        lower_this_thread(nice)
        try:
            result.append(make())
        except BaseException as exc:  # raised again in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="background-load")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
