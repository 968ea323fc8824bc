"""PRTS core: everything the appliance does, importable without Flask."""

from importlib import metadata

try:
    __version__ = metadata.version("prts")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
