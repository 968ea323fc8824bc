"""PRTS core: everything the appliance does, importable without Flask."""


def __getattr__(name: str):
    # Looked up on first use: importlib.metadata costs ~30 ms at import, and git's hooks
    # import this package on every push.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("prts")
        except metadata.PackageNotFoundError:  # a source tree that was not installed
            return "0.0.0+source"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
