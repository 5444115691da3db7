"""Error types for user-facing failures.

Every error that bad input can cause is a :class:`NeurocompileError`. The CLI prints its
message as one line and exits with code 2; the message names the file, node and field.
"""


class NeurocompileError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""


def first_line(exc: Exception) -> str:
    """The first line of an exception's message (its type's name if it has none): what a one-line
    error quotes of a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class GraphError(NeurocompileError):
    """A NIR graph that cannot be read or is inconsistent.

    ``node`` and ``field`` name where the problem is, when known.
    """

    def __init__(self, message: str, node: str | None = None, field: str | None = None):
        self.node = node
        self.field = field
        where = ""
        if node is not None:
            where = f"node '{node}'"
            if field is not None:
                where += f", field '{field}'"
            where += ": "
        super().__init__(where + message)


class HardwareLimitError(NeurocompileError):
    """A network that the fixed-point target cannot represent (a design-rule violation)."""

    def __init__(self, message: str, node: str, parameter: str):
        self.node = node
        self.parameter = parameter
        super().__init__(f"node '{node}', parameter '{parameter}': {message}")


class CheckpointError(NeurocompileError):
    """A file that is not a valid neurocompile checkpoint."""


class BackendUnavailableError(NeurocompileError):
    """A backend whose runtime (Lava, CUDA) is not installed or does not run here."""
