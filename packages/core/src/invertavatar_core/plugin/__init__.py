"""Plugins: the plugin manager and hook specs, the component registry and kinds, protocols and base classes."""
