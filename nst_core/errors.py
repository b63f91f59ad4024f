"""Errors a person caused and can fix; the CLI and the app show them as one line, never a traceback."""


class UserError(Exception):
    """Bad input or missing resource, with a message that names the problem."""
