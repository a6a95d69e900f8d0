"""The one error type users see. Only the CLI catches it; library code raises it with the fix in the text."""

from __future__ import annotations


class KitError(Exception):
    """A problem the user can fix: the message names the file, key or row and what to do instead."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        text = message
        if self.problems:
            text = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)
