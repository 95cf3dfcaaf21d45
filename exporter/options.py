"""A collector's own flags, typed: `--collector.<collector>.<name>`.

An Option is declared once, in its collector's options.py, and is its own key:
`settings[MAX_ENTRIES]` is an int for mypy and at run time, with no string written twice and
no registry filled by importing the collectors. Its value is parsed and checked when the
command line is parsed (a bad value is a usage error naming the flag), and checked again
when Settings are built by hand (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def _no_check(_value: object) -> None:
    pass


# eq=False: an option is compared and hashed by identity, so two collectors' options of the
# same name stay two keys.
@dataclass(frozen=True, eq=False)
class Option(Generic[T]):
    name: str  # the flag's last part: --collector.<collector>.<name>
    parse: Callable[[str], T]  # text -> value; raises ValueError with a message for the user
    default: T
    check: Callable[[T], None] = _no_check  # raises ValueError with a message for the user
    help: str = ""

    def __post_init__(self) -> None:
        self.check(self.default)  # a default its own check refuses is a programming error

    def from_text(self, text: str) -> T:
        try:
            value = self.parse(text)
        except ValueError:
            # int() and float() say "invalid literal for int() with base 10": say it plainly.
            if self.parse is int:
                raise ValueError(f"not a whole number: {text!r}") from None
            if self.parse is float:
                raise ValueError(f"not a number: {text!r}") from None
            raise
        self.check(value)
        return value


def positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, not {value:g}")


def at_least_one(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")


def non_negative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, not {value:g}")
