"""User errors: things a user can fix. The CLIs print them as one line, never a traceback."""

import functools
import sys

import typer


class KitError(Exception):
    """An error with a message that tells the user what is wrong and how to fix it."""


def user_errors(fn):
    """Decorate a CLI command: a KitError becomes one red line and exit code 1 (2 stays typer's usage error)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KitError as e:
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def warn(message: str) -> None:
    """One yellow warning line on stderr."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.stderr.flush()


def note(message: str) -> None:
    """One dim note line on stderr: something the kit decided that the user should know."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[cyan]note:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.stderr.flush()
