"""Hook implementations only: registers every component of invertavatar-faceverse."""

from invertavatar_core import hookimpl

__all__: list[str] = []
