"""Deployment: split a VLM into runtime programs and export them (work in progress)."""

from vlsi_edge.deploy.executorch_export import export_executorch, export_parts, runner_metadata
from vlsi_edge.deploy.parts import Parts, generate, split_model

__all__ = ["Parts", "export_executorch", "export_parts", "generate", "runner_metadata", "split_model"]
