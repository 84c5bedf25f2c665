"""Core's own components, registered through the same hooks a third-party plugin uses."""

from invertavatar_core.plugins import hookimpl

__all__: list[str] = []
