"""The one exception type the CLI turns into a plain message and a non-zero exit."""


class CbtLlmError(Exception):
    """A user-facing error: bad input, bad configuration, or a failed external call, with no traceback."""
