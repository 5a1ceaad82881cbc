"""Read a gpu_check run folder: per-stage seconds and where each model-loading stage ran; exit 1
when one ran off the expected device (`cuda` on the GPU machine, `cpu` in the tiny check).

    python bench/gpu_check_report.py RUN_DIR cuda
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXPECTED_DTYPE = {"cuda": ("torch.bfloat16", "torch.float16"), "cpu": ("torch.float32",)}


def placements(run: Path) -> dict[str, dict]:
    """stage -> {device, dtype} for train, eval and export's parity, from their outputs."""
    stages = {s["name"]: s for s in json.loads((run / "run.json").read_text())["stages"]}
    train = stages["train"]["metrics"]
    evaluated = json.loads((run / "eval" / "eval.json").read_text())["placement"]
    parity = stages["export"]["metrics"]["parity_placement"]
    return {"train": {"device": train["device"], "dtype": train["base_dtype"]},
            "eval": evaluated, "export (parity)": parity}


def main(argv: list[str]) -> int:
    run, expected = Path(argv[0]), argv[1]
    manifest = json.loads((run / "run.json").read_text())
    for s in manifest["stages"]:
        print(f"{s['name']:8} {s['status']:5} {s.get('seconds', 0):8.1f} s")
    print("resolved:", json.dumps(manifest.get("resolved", {})))
    wrong = []
    for stage, where in placements(run).items():
        print(f"{stage}: {where['device']} {where['dtype']}")
        if not where["device"].startswith(expected) or where["dtype"] not in EXPECTED_DTYPE[expected]:
            wrong.append(stage)
    if wrong:
        print(f"FAILED: {', '.join(wrong)} did not run on {expected} in {'/'.join(EXPECTED_DTYPE[expected])}")
        return 1
    print(f"every model-loading stage ran on {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
