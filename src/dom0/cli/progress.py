"""Progress bars for long work (one per guest), on stderr and only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dom0.model import Progress


class Board(Protocol):
    """Hands out one progress callback per item of work."""

    def bar(self, label: str, total: int) -> Progress:
        """A callback taking the amount done so far (bytes)."""
        ...


class _Silent:
    def bar(self, label: str, total: int) -> Progress:
        # dom0.model's dataclasses cost `image inspect` ~15 ms it does not need: loaded only when a bar is asked for
        from dom0.model import no_progress

        return no_progress


class _Rich:
    def __init__(self, progress: object) -> None:
        self._progress = progress

    def bar(self, label: str, total: int) -> Progress:
        from rich.progress import Progress as RichProgress

        assert isinstance(self._progress, RichProgress)
        progress = self._progress
        task = progress.add_task(label, total=total or None)

        def update(done: int) -> None:
            # Sizes are estimates (a guest's memory, not its image): never let a bar run past its end.
            progress.update(task, completed=min(done, total) if total else done)

        return update


@contextmanager
def board(enabled: bool = True) -> Iterator[Board]:
    """Bars on a terminal; nothing when output goes to a file or `enabled` is false (--json)."""
    if not enabled or not sys.stderr.isatty():
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Rich(progress)
