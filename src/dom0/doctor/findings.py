"""What `dom0 doctor` reports: findings with a severity, whom they are about, the evidence and what to do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

HOST = "host"


class Severity(StrEnum):
    """How bad a finding is. Critical and warning fail the run (exit 1); a note only informs."""

    CRITICAL = "critical"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        """0 for the worst, so findings sort worst first."""
        return _RANK[self]

    @property
    def fails(self) -> bool:
        """Whether a finding of this severity means something is wrong."""
        return self is not Severity.NOTE


_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.NOTE: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found: `subject` is a guest's name or "host"; `check` names the check that found it."""

    severity: Severity
    subject: str
    check: str
    evidence: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every finding (worst first) and, in words, what was looked at."""

    findings: tuple[Finding, ...]
    checked: tuple[str, ...]

    @property
    def failed(self) -> bool:
        """Whether anything is wrong (notes alone are not)."""
        return any(f.severity.fails for f in self.findings)


def worst_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Critical, then warnings, then notes; the host before guests, then by guest name (stable otherwise)."""
    return tuple(sorted(findings, key=lambda f: (f.severity.rank, f.subject != HOST, f.subject)))
