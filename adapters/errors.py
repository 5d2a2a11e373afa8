"""The root of the product's own errors, and the exit codes of the ``writeback`` command.

Every error the product raises for a person or a caller to read (a bad tenant file, key file or
setting, a refused command, a write that cannot be found or ended abnormally, a payload the codec
refuses) is a ``WritebackError``. Each class says which exit code the CLI ends with when one reaches
it, so the CLI handles them all in one place (workers/cli.py ``main``). Their messages name files,
fields, codes and ids, never clinical content.

It lives at the bottom of the dependency order (workers → workflows → activities → adapters) so
that errors of every layer can derive from it, and workflow code can import it in the sandbox.

(Failures of a write's steps are another matter: they are Temporal ``ApplicationError``s typed by
the error taxonomy, activities/errors.py, and end in the write's state, not in an exception.)
"""

from __future__ import annotations

from typing import ClassVar

#: ``writeback`` exits 0 when done (verified, or accepted without --wait); 1 when the write was
#: rejected, compensated or abandoned (or ended abnormally); 2 on bad input or no service to talk
#: to; 3 when the write waits for a person.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3


class WritebackError(Exception):
    """An error of ours, with the message to show and the CLI's exit code for it."""

    #: what ``writeback`` exits with when this error reaches it
    exit_code: ClassVar[int] = EXIT_USAGE

    def for_terminal(self) -> str:
        """The line the CLI prints after ``error:``."""
        return str(self)
