"""The event loop: uvloop unless FA_SYNC_EVENT_LOOP=asyncio or uvloop is missing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop

from daemon.cli_support import run_async
from daemon.errors import ConfigError
from daemon.loop import run
from daemon.settings import Settings


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_runs_the_coroutine() -> None:
    """Asked for uvloop, the coroutine runs on a uvloop loop."""
    assert run(_loop_type(), loop="uvloop") is uvloop.Loop


def test_uvloop_is_the_default() -> None:
    """With no choice made, run() uses uvloop."""
    assert run(_loop_type()) is uvloop.Loop


def test_asyncio_runs_on_the_standard_loop() -> None:
    """Asked for asyncio, the coroutine runs on the standard library's loop."""
    loop_type = run(_loop_type(), loop="asyncio")
    assert issubclass(loop_type, asyncio.BaseEventLoop)
    assert not issubclass(loop_type, uvloop.Loop)


def test_missing_uvloop_falls_back_to_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where uvloop cannot be imported (Windows), uvloop's work runs on the standard loop."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    assert issubclass(run(_loop_type(), loop="uvloop"), asyncio.BaseEventLoop)


def test_run_returns_the_result_and_closes_the_loop() -> None:
    """run() hands back the coroutine's result and leaves no loop open behind it."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def answer() -> int:
        loops.append(asyncio.get_running_loop())
        return 42

    assert run(answer()) == 42
    assert loops[0].is_closed()


def test_event_loop_setting_defaults_to_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, FA_SYNC_EVENT_LOOP is uvloop."""
    monkeypatch.delenv("FA_SYNC_EVENT_LOOP", raising=False)
    assert Settings.load(_env_file=None).event_loop == "uvloop"


def test_event_loop_setting_reads_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """FA_SYNC_EVENT_LOOP=asyncio chooses the standard loop."""
    monkeypatch.setenv("FA_SYNC_EVENT_LOOP", "asyncio")
    assert Settings.load(_env_file=None).event_loop == "asyncio"


def test_unknown_event_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown loop is a ConfigError naming the variable and the values it takes."""
    monkeypatch.setenv("FA_SYNC_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError) as info:
        Settings.load(_env_file=None)
    message = str(info.value)
    assert "FA_SYNC_EVENT_LOOP" in message
    assert "'uvloop'" in message
    assert "'asyncio'" in message


@pytest.mark.parametrize(
    ("choice", "on_uvloop"),
    [
        (None, True),  # unset: the default
        ("uvloop", True),
        ("asyncio", False),
    ],
)
def test_cli_commands_run_on_the_configured_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, choice: str | None, on_uvloop: bool
) -> None:
    """A CLI command (run_async) runs on the loop FA_SYNC_EVENT_LOOP names."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    if choice is None:
        monkeypatch.delenv("FA_SYNC_EVENT_LOOP", raising=False)
    else:
        monkeypatch.setenv("FA_SYNC_EVENT_LOOP", choice)
    assert issubclass(run_async(_loop_type)(), uvloop.Loop) is on_uvloop


def test_the_collector_is_tuned_once_per_process() -> None:
    """run() raises the collector's young threshold and freezes what was loaded before it,
    once: a later run() leaves what a process set since alone."""
    import gc

    from daemon import loop

    saved = gc.get_threshold()
    loop.tune_collector.cache_clear()
    try:
        gc.set_threshold(700, 10, 10)
        gc.unfreeze()
        run(_loop_type())
        assert gc.get_threshold() == loop.GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        gc.set_threshold(1234, 10, 10)
        run(_loop_type())
        assert gc.get_threshold() == (1234, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
        loop.tune_collector.cache_clear()
