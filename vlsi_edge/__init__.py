"""vlsi_edge: VLsI-style layer-wise distillation of vision-language models for edge deployment."""
