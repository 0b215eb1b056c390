"""The line between a user's mistake and ours, drawn once for every command-line tool.

`InputError` is the base of every error a user can fix (a config value, a file, a model directory):
its message is one sentence naming the file, key or value and what is allowed. `OSError`s (a missing
file, a full disk, no permission) count as the user's environment too: their message names the path.
Anything else is a bug in vlsi_edge, and `boundary` says so beside the traceback.

Exit status of every CLI: 0 done, 1 finished with a failed result (a gate, a diverged run, a card
mismatch), 2 bad input, 3 a bug, 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import sys
import traceback
from collections.abc import Callable

BAD_INPUT, BUG, INTERRUPTED = 2, 3, 130


class InputError(Exception):
    """Bad input the user can fix; the CLI prints the message and exits 2."""


def boundary(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI's `main(argv) -> exit status`: expected errors become one sentence, the rest a bug report."""

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (InputError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return BAD_INPUT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return INTERRUPTED
        except Exception as e:  # noqa: BLE001 - the one place that catches everything, to say it is ours
            traceback.print_exc()
            print(f"error: this is a bug in vlsi_edge, not in your input ({type(e).__name__} above); please report "
                  "it with the command you ran and the traceback", file=sys.stderr)
            return BUG

    return guarded


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for integers >= minimum (argparse turns the error into a usage line, exit 2)."""

    def parse(text: str) -> int:
        stripped = text.strip().lstrip("+")
        if not stripped.isdigit() or int(stripped) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return int(stripped)

    parse.__name__ = f"whole number >= {minimum}"
    return parse
