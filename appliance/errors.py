"""Exceptions the services raise for bad input; each names the field that was wrong."""


class ValidationError(ValueError):
    """Input was rejected; ``field`` names the offending field so a form can show it inline."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """A named object does not exist."""


class PermissionDenied(PermissionError):
    """The actor may not do this."""
