"""Hook implementations only: registers every component of invertavatar-aggregators."""

from invertavatar_core import hookimpl

__all__: list[str] = []
