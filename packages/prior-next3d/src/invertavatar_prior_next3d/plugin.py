"""Hook implementations only: registers every component of invertavatar-prior-next3d."""

from invertavatar_core import hookimpl

__all__: list[str] = []
