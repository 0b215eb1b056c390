"""vlsi_edge: distil a large vision-language model into a small one (VLsI) and ship it to devices."""

import logging as _logging

# torchao's wheel carries CUDA-only kernels (mxfp8, cutlass) that it tries to load at import and
# reports failing, and torch warns that torchao registers enums the old way; neither matters on CPU,
# and both print on every command that imports transformers.
_logging.getLogger("torchao").setLevel(_logging.ERROR)
_logging.getLogger("torch.utils._pytree").setLevel(_logging.ERROR)
