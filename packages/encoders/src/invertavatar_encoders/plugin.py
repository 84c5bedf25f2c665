"""Hook implementations only: registers every component of invertavatar-encoders."""

from invertavatar_core import hookimpl

__all__: list[str] = []
