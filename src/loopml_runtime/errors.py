"""The runtime's own errors (it cannot import loopml's): loopml maps them to its user-facing ones."""


class PackageError(Exception):
    """The folder is not a loadable model package (missing or damaged files)."""


class InputError(ValueError):
    """Rows that do not fit the model: a missing column, a value of the wrong type."""
