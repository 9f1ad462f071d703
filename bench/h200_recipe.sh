#!/usr/bin/env bash
# The one-GPU recipe in one device call (one H200), for bench/results/<date>_h200_recipe.md:
#   bash bench/h200_recipe.sh WHEEL_DIR OUT_DIR [overrides...]
# Runs `youtu run $CONFIG` (default configs/small.toml) in /tmp/runs under RECIPE_S seconds
# (default 530); SCALE=0.25 runs a copy with every stage's tokens, the synth mix and the SFT
# steps scaled (a shorter check of the whole path, not the recipe's numbers). Then it
# copies what the results file reads (log, pipeline.json, metrics, eval results, report) to
# OUT_DIR: the checkpoints stay behind. APTBench (../shared/aptbench, 8 MB) does not travel with
# the tree; to score it there, copy it in first and carry it beside the wheels:
#   cp -r ../shared/aptbench .aptbench && echo /.aptbench/ >> .git/info/exclude  # carry .aptbench
set -u
whl=$1; out=$2; shift 2
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$whl"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
[[ -d .aptbench ]] && export YOUTU_APTBENCH_DIR=$PWD/.aptbench
echo "== install $(( $(date +%s) - t0 ))s; $(nproc) cores"
cfg=${CONFIG:-configs/small.toml}
if [[ -n ${SCALE:-} ]]; then
  python3 - "$cfg" "$SCALE" /tmp/scaled.toml <<'PY' || exit 1
import sys, tomllib, tomli_w
cfg = tomllib.load(open(sys.argv[1], "rb")); f = float(sys.argv[2])
for st in cfg["train"]["stages"]:
    st["tokens"] = max(st["batch_tokens"], round(st["tokens"] * f / st["batch_tokens"]) * st["batch_tokens"])
cfg["synth"]["mix"] = {k: max(50, round(v * f)) for k, v in cfg["synth"]["mix"].items()}
cfg["sft"]["steps"] = max(10, round(cfg["sft"]["steps"] * f))
tomli_w.dump(cfg, open(sys.argv[3], "wb"))
PY
  cfg=/tmp/scaled.toml
fi
timeout "${RECIPE_S:-530}" python3 -m youtu run "$cfg" --out_dir=/tmp/runs "$@" \
  > "$out/recipe.log" 2>&1
echo "== recipe rc=$? at $(( $(date +%s) - t0 ))s"
run=/tmp/runs/small
mkdir -p "$out/run"
cp "$run"/pipeline.json "$run"/run.toml "$out/run/" 2>/dev/null
for d in train train_agent train_noagent sft; do
  [[ -f $run/$d/metrics.jsonl ]] && cp "$run/$d/metrics.jsonl" "$out/run/$d.metrics.jsonl"
done
# The device returns a limited number of files, and not deep folders: the report's text only
# (its plots stay behind), each model's results.json flattened into run/eval/<step>__<stage>.json.
[[ -f $run/report/report.md ]] && cp "$run/report/report.md" "$out/run/report.md"
mkdir -p "$out/run/eval"
for f in "$run"/eval/*/*/results.json; do
  [[ -f $f ]] && cp "$f" "$out/run/eval/$(basename "$(dirname "$(dirname "$f")")")__$(basename "$(dirname "$f")").json"
done
cp "$run"/synth/stats.json "$out/run/synth_stats.json" 2>/dev/null
grep -v -E "Warning|warn\(|^\s*$" "$out/recipe.log" | tail -n "${TAIL:-60}"
python3 bench/recipe_summary.py "$out" > "$out/summary.md" 2>&1 && cat "$out/summary.md"
