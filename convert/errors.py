"""The exceptions the conversion stage raises.

Every error is a :class:`ConvertError`. The command line turns each into a
one-line message and an exit code (:attr:`ConvertError.exit_code`): 2 for bad
usage or input the user can fix, 1 for a step that failed.
"""

from __future__ import annotations

__all__ = [
    "CompilationError",
    "CompilerNotFoundError",
    "ConvertError",
    "DataError",
    "NotFullyIntegerError",
]


class ConvertError(Exception):
    """Base class of every error raised by the conversion stage."""

    exit_code: int = 1


class DataError(ConvertError, ValueError):
    """MNIST could not be found, or a data file is damaged or unsafe."""

    exit_code = 2


class NotFullyIntegerError(ConvertError, ValueError):
    """A .tflite model is not fully integer (float tensors, float ops or dynamic shapes).

    Attributes:
        problems: one line per offending tensor or op.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class CompilerNotFoundError(ConvertError, FileNotFoundError):
    """``edgetpu_compiler`` is not installed or not on PATH."""

    exit_code = 2


class CompilationError(ConvertError, RuntimeError):
    """``edgetpu_compiler`` ran and failed.

    Attributes:
        output: everything the compiler printed (stdout then stderr).
        returncode: its exit status.
    """

    def __init__(self, message: str, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode
