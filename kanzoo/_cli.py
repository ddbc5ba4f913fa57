"""One error path for every kanzoo entry point (train.py, evaluate.py, ``python -m kanzoo.*``).

A problem with what the user gave (a setting, a file, a checkpoint, data) is a ``ValueError`` or
``OSError`` (or a subclass) whose message names the input and what was expected. Entry points
run their main function through :func:`run_main`: such an error prints ONE line, ``error: ...``,
to stderr and exits with status 2; anything else (a bug) keeps its traceback.

This module imports nothing heavy, so entry points can use it before torch is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["USER_ERRORS", "UserInputError", "exit_with_error", "one_line", "run_main"]

#: Exception types that mean "the input is wrong", not "kanzoo has a bug".
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)

EXIT_USAGE = 2


class UserInputError(ValueError):
    """A user-supplied setting, file or value is not what kanzoo expects (one-line message)."""


def one_line(err: BaseException | str) -> str:
    """``error: <message>`` on a single line.

    OmegaConf and Hydra append ``full_key``/``object_type`` detail lines; only the first line of
    their messages is kept. Other messages have their line breaks folded into spaces.
    """
    if isinstance(err, BaseException):
        text = str(err).strip()
        if not text:
            text = type(err).__name__
        module = type(err).__module__ or ""
        if module.startswith(("omegaconf", "hydra")):
            text = text.splitlines()[0]
        if isinstance(err, KeyError) and len(err.args) == 1:
            text = str(err.args[0])
    else:
        text = str(err).strip()
    text = " ".join(text.split())
    return text if text.startswith("error: ") else "error: " + text


def exit_with_error(err: BaseException | str, *, code: int = EXIT_USAGE) -> None:
    """Print :func:`one_line` of ``err`` to stderr and exit with ``code`` (2: bad input)."""
    print(one_line(err), file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_main(
    main: Callable[..., Any],
    *args: Any,
    user_errors: tuple[type[BaseException], ...] = USER_ERRORS,
    **kwargs: Any,
) -> Any:
    """Call ``main(*args, **kwargs)``; a user error becomes one ``error:`` line and exit status 2.

    Returns whatever ``main`` returns. ``SystemExit`` and ``KeyboardInterrupt`` pass through;
    exceptions outside ``user_errors`` keep their traceback (they are bugs to report).
    """
    try:
        return main(*args, **kwargs)
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): nothing to report
        try:  # keep the interpreter's final flush of stdout from failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # stdout is not a real file (e.g. captured)
            pass
        raise SystemExit(1) from None
    except user_errors as err:
        exit_with_error(err)
