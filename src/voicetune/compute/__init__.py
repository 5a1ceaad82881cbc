"""Where the pipeline places a stage when compute.target is not local: `compute=modal` (modal.py)."""
