"""Logging for the command-line tools: our INFO lines by default, third-party chatter only with -v.

Without -v, the libraries' INFO logs (onnxruntime's quantizer alone writes ~900 lines per export, onnx-ir
and onnxscript hundreds more) and their FutureWarnings are hidden; their warnings and errors still show.
"""

from __future__ import annotations

import logging
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(verbose: bool = False) -> None:
    logging.basicConfig(format=FORMAT)  # a no-op where handlers exist (under pytest, or a library's own)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # onnxruntime's quantizer calls basicConfig on import
            handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("vlsi_edge").setLevel(logging.INFO)
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)


def add_flag(parser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' INFO logs and FutureWarnings")
