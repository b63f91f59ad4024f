"""Errors a person caused and can fix; the CLI and the app show them as one line, never a traceback."""


class UserError(Exception):
    """Bad input or missing resource, with a message that names the problem."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none), for one-line error reports.

    >>> raise UserError(f"cannot read weights ({first_line(exc)})")  # doctest: +SKIP
    """
    lines = str(exc).splitlines()
    return next((line for line in lines if line.strip()), type(exc).__name__)
