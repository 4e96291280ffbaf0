"""The errors dom0 raises: each carries a one-line message and a hint; only dom0.cli turns them into exit codes."""

from __future__ import annotations


class Dom0Error(Exception):
    """A failure the user can act on: `message` says what went wrong, `hint` what to try next."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(Dom0Error):
    """The command line or a spec file is wrong (exit code 2)."""

    exit_code = 2


class HypervisorUnavailable(Dom0Error):
    """No hypervisor answered at the URI that was tried."""


class GuestNotFound(Dom0Error):
    """No guest has the given name, UUID or ID."""


class GuestStateError(Dom0Error):
    """The guest is not in a state that allows the operation (e.g. pausing a stopped guest)."""


class OperationTimeout(Dom0Error):
    """An operation did not finish within its time limit; the message says what state things were left in."""


class CommandError(Dom0Error):
    """An external command failed; the message carries its stderr."""

    def __init__(self, message: str, hint: str = "", *, returncode: int = 1, stderr: str = "") -> None:
        super().__init__(message, hint)
        self.returncode = returncode
        self.stderr = stderr
