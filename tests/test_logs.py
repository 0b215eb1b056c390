"""The CLIs' logging (vlsi_edge.logs): our INFO lines always, the libraries' INFO only with -v."""

from __future__ import annotations

import subprocess
import sys

import pytest

EMIT = """
import logging, sys, warnings
if {library_first}:
    logging.basicConfig(level=logging.INFO)  # what onnxruntime's quantizer does on import
from vlsi_edge import logs
logs.setup(verbose={verbose})
logging.getLogger("vlsi_edge.export").info("OURS")
logging.getLogger("onnxruntime.quantization").info("THIRD-PARTY")
logging.info("ROOT-INFO")
logging.getLogger("onnxruntime.quantization").warning("THIRD-WARNING")
warnings.warn("FUTURE", FutureWarning)
"""


@pytest.mark.parametrize("library_first", [False, True])
@pytest.mark.parametrize("verbose", [False, True])
def test_library_info_only_with_verbose(verbose, library_first):
    code = EMIT.format(verbose=verbose, library_first=library_first)
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "INFO vlsi_edge.export: OURS" in err  # our format, whoever configured logging first
    assert "THIRD-WARNING" in err
    for line in ("THIRD-PARTY", "ROOT-INFO", "FUTURE"):
        assert (line in err) == verbose, (line, err)
