#!/usr/bin/env bash
# The measurements of bench/results/2026-12-04_h200_train.md in one device call (one H200):
#   bash bench/h200_train_suite.sh WHEEL_DIR OUT_DIR
# (2026-12-04 ran an earlier order: s4096 lost its rows to the torchtitan ImportError, since
# made non-fatal; a `rowwise` phase timed --fp8 rowwise alone.)
# Phases in order of importance, each in its own process (a failure shows and the rest runs),
# each under its own time limit; a phase that would start after BUDGET_S seconds is skipped.
set -u
whl=$1; out=$2; budget=${BUDGET_S:-300}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# WHEEL_DIR: the default wheels of ../shared/device/fetch-wheels.sh plus torchao and the
# torchtitan 0.2.2 peer's (0.3.0 does not import on torch 2.11; bench/torchtitan_peer.py):
#   bash ../shared/device/fetch-wheels.sh torchao==0.18.0 torchtitan==0.2.2 tyro==1.0.17 \
#     docstring-parser==0.18.0 typeguard==4.6.1 shtab==1.13.0 torchdata==0.11.0 \
#     datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$whl"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/bench
start=$(date +%s)
phase() {  # name limit_s command...
  local name=$1 limit=$2; shift 2
  local now=$(( $(date +%s) - start ))
  if (( now + 20 > budget )); then echo "== $name: skipped at ${now}s (budget ${budget}s)"; return; fi
  (( limit > budget - now )) && limit=$(( budget - now ))
  echo "== $name (t=${now}s, limit ${limit}s)"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1; echo "== $name rc=$?"
  grep -v -E "Warning|warn\(|register_constant|^\s*$" "$out/$name.log" | tail -n 14
}
python3 -c "import torch, torchao, torchtitan.models.deepseek_v3; from importlib.metadata import version; print('torch', torch.__version__, 'torchao', torchao.__version__, 'torchtitan', version('torchtitan'), torch.cuda.get_device_name())" 2>&1 | tail -n 2
B=bench/train_throughput.py
phase s4096 170 python3 $B --preset youtu_2b --seq 4096 --batch 4 --compile --fp8 off,tensorwise \
  --peer torchtitan --steps 4 --warmup 2 --json-out "$out/s4096.json"
phase s32k 110 python3 $B --preset youtu_2b --seq 32768 --batch 1 --compile --ac full,selective \
  --peer none --steps 3 --warmup 1 --json-out "$out/s32k.json"
phase gputests 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/train/test_fp8.py
phase curve 100 python3 $B --preset small --seq 2048 --batch 8 --compile --fp8 off,tensorwise \
  --curve 300 --json-out "$out/curve.json"
phase fp8auto 110 python3 $B --preset youtu_2b --seq 4096 --batch 4 --compile --fp8 tensorwise,rowwise \
  --fp8-linears auto --peer none --steps 4 --warmup 2 --json-out "$out/fp8auto.json"
echo "== done at $(( $(date +%s) - start ))s"
