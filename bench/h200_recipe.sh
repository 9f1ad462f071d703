#!/usr/bin/env bash
# The one-GPU recipe in one device call (one H200), for bench/results/<date>_h200_recipe.md:
#   bash bench/h200_recipe.sh WHEEL_DIR OUT_DIR [overrides...]
# Runs `youtu run configs/small.toml` in /tmp/runs under RECIPE_S seconds (default 530), then
# copies what the results file reads (log, pipeline.json, metrics, eval results, report) to
# OUT_DIR: the checkpoints stay behind.
set -u
whl=$1; out=$2; shift 2
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$whl"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
echo "== install $(( $(date +%s) - t0 ))s; $(nproc) cores"
timeout "${RECIPE_S:-530}" python3 -m youtu run configs/small.toml --out_dir=/tmp/runs "$@" \
  > "$out/recipe.log" 2>&1
echo "== recipe rc=$? at $(( $(date +%s) - t0 ))s"
run=/tmp/runs/small
mkdir -p "$out/run"
cp "$run"/pipeline.json "$run"/run.toml "$out/run/" 2>/dev/null
for d in train train_agent train_noagent sft; do
  [[ -f $run/$d/metrics.jsonl ]] && cp "$run/$d/metrics.jsonl" "$out/run/$d.metrics.jsonl"
done
[[ -d $run/report ]] && cp -r "$run/report" "$out/run/report"
[[ -d $run/eval ]] && (cd "$run" && find eval -name results.json | tar cf - -T - | tar xf - -C "$out/run")
cp "$run"/synth/stats.json "$out/run/synth_stats.json" 2>/dev/null
grep -v -E "Warning|warn\(|^\s*$" "$out/recipe.log" | tail -n "${TAIL:-60}"
