"""Problems found while reading an inventory: one line each, errors and warnings alike.

A :class:`Problem` prints the way compilers do, so editors can jump to it::

    >>> str(Problem("error", "group 'a' -> 'b' -> 'a': children form a cycle", "inv.yml", 9, 9))
    "inv.yml:9:9: group 'a' -> 'b' -> 'a': children form a cycle"

Errors become :class:`~orchestrator.errors.InventoryError` (same text, same location fields);
warnings are kept on the :class:`~inventory.model.Inventory` and logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import InventoryError

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding; ``line``/``column`` are 1-based when known."""

    severity: Severity
    message: str
    source: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        return str(InventoryError(self.message, source=self.source, line=self.line,
                                  column=self.column))

    def to_error(self, *, more: int = 0) -> InventoryError:
        """The exception a caller sees; ``more`` counts further errors not shown."""
        message = self.message
        if more:
            plural = "s" if more > 1 else ""
            message += f" (+{more} more error{plural}: run 'serverguard inventory check')"
        return InventoryError(message, source=self.source, line=self.line, column=self.column)

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "message": self.message,
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "text": str(self),
        }


def error(message: str, source: str | None = None, line: int | None = None,
          column: int | None = None) -> Problem:
    return Problem("error", message, source, line, column)


def warning(message: str, source: str | None = None, line: int | None = None,
            column: int | None = None) -> Problem:
    return Problem("warning", message, source, line, column)


def first_error(problems: list[Problem]) -> InventoryError | None:
    """The error to raise for a list of problems (the first one), or ``None``."""
    errors = [p for p in problems if p.is_error]
    if not errors:
        return None
    return errors[0].to_error(more=len(errors) - 1)
