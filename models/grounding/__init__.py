"""Defect localisation: critique -> defect phrases -> GroundingDINO boxes -> SAM masks.

No ComfyUI imports here; torch/transformers models are imported lazily by the loaders.
"""
