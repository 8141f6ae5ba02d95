"""Seeing gives way to hearing: the eyes' threads, and the onnxruntime pools of the models
loaded for them, run at a lower CPU priority (Linux keeps a nice value per thread)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from glasses_agent.edge.priority import BACKGROUND_NICE, in_background, lower_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a nice value per thread is Linux's")


def _threads() -> dict[int, int]:
    return {int(tid): os.getpriority(os.PRIO_PROCESS, int(tid))
            for tid in os.listdir("/proc/self/task")}


def test_a_model_loaded_in_the_background_runs_its_threads_there() -> None:
    from edge_models.registry import open_session
    from glasses_agent.edge.speech.vad import VAD_MODEL

    before = _threads()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    # two intra-op threads: a pool thread besides the caller, started with the session
    session = in_background(lambda: open_session(VAD_MODEL, intra_op_threads=2))
    assert session is not None
    new = {tid: nice for tid, nice in _threads().items() if tid not in before}
    assert new, "the session started no thread"
    assert all(nice >= BACKGROUND_NICE for nice in new.values()), new
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # not the caller


def test_an_error_in_the_background_comes_back_to_the_caller() -> None:
    def fail() -> None:
        raise FileNotFoundError(Path("/nowhere/model.onnx"))

    with pytest.raises(FileNotFoundError):
        in_background(fail)


def test_lowering_a_thread_never_raises_it_back() -> None:
    seen: list[int] = []
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # CI may run niced

    def body() -> None:
        lower_this_thread(15)
        lower_this_thread(BACKGROUND_NICE)  # 10 < 15: left at 15
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [max(base, 15)]
