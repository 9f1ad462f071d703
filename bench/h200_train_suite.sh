#!/usr/bin/env bash
# The measurements of bench/results/2026-12-04_h200_train.md in one device call (one H200):
#   bash bench/h200_train_suite.sh WHEEL_DIR OUT_DIR
# (2026-12-04 ran an earlier order: s4096 lost its rows to the torchtitan ImportError, since
# made non-fatal; a `rowwise` phase timed --fp8 rowwise alone.)
# Phases in order of importance, each in its own process (a failure shows and the rest runs),
# each under its own time limit; a phase that would start after BUDGET_S seconds is skipped.
set -u
whl=$1; out=$2; budget=${BUDGET_S:-300}
# PHASES picks some, e.g. PHASES="s4096 chunks gputests" (default: all).
phases=" ${PHASES:-s4096 chunks s32k gputests curve fp8auto} "
source "$(dirname "$0")/h200_phases.sh"
python3 -c "import torch, torchao, torchtitan.models.deepseek_v3; from importlib.metadata import version; print('torch', torch.__version__, 'torchao', torchao.__version__, 'torchtitan', version('torchtitan'), torch.cuda.get_device_name())" 2>&1 | tail -n 2
B=bench/train_throughput.py
# s4096 at batch 4 ran out of memory on an H100's 80 GB (2026-12-07: the H200 peaked at 74.5 GB);
# TRAIN_BATCH=2 there. The compiled loss was 8% faster than the chunked one at 2 x 4096 and
# used less memory (2026-12-07_h100_train.md); --profile prints where ours and torchtitan differ.
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
phase s4096 170 python3 $B --preset youtu_2b --seq 4096 --batch "${TRAIN_BATCH:-4}" --compile \
  --loss-kernel compiled --fp8 off,tensorwise --fp8-linears auto --peer torchtitan --steps 4 \
  --warmup 2 --profile 25 --json-out "$out/s4096.json"
phase chunks 120 python3 $B --preset youtu_2b --seq 4096 --batch "${TRAIN_BATCH:-4}" --compile \
  --loss-kernel chunked_compiled --peer none --steps 4 --warmup 2 --json-out "$out/chunks.json"
phase s32k 110 python3 $B --preset youtu_2b --seq 32768 --batch 1 --compile --ac full,selective \
  --peer none --steps 3 --warmup 1 --json-out "$out/s32k.json"
phase gputests 90 python3 -m pytest -q -m gpu -p no:cacheprovider tests/train/test_fp8.py \
  tests/train/test_loss.py
phase curve 100 python3 $B --preset small --seq 2048 --batch 8 --compile --fp8 off,tensorwise \
  --curve 300 --json-out "$out/curve.json"
phase fp8auto 110 python3 $B --preset youtu_2b --seq 4096 --batch 4 --compile --fp8 tensorwise,rowwise \
  --fp8-linears auto --peer none --steps 4 --warmup 2 --json-out "$out/fp8auto.json"
echo "== done at $(( $(date +%s) - start ))s"
