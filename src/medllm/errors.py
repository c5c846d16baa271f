"""The one exception type the CLI turns into a one-line error message."""


class MedllmError(Exception):
    """A user-facing error: bad config, missing file, malformed data row."""
