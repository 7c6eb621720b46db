"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class ThinkcError(Exception):
    """Bad input or an unmet precondition the user can fix; the message says how."""
