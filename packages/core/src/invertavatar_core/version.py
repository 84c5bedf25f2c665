"""The one version number every invertavatar distribution shares."""

__version__ = "0.1.0"
