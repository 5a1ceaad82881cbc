"""Where a stage runs: `compute=local` (this machine) or `compute=modal` (a Modal GPU, see modal.py)."""
