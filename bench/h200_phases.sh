# Sourced by bench/h200_*_suite.sh: installs the carried wheels and defines `phase`.
#   whl=WHEEL_DIR out=OUT_DIR budget=SECONDS phases=" name ... " (empty: every phase)
# `phase NAME LIMIT_S COMMAND...` runs COMMAND in its own process under min(LIMIT_S, what is
# left of the budget), its output in $out/NAME.log (tail shown); a phase that would start
# within 20 s of the budget, or is not in $phases, is skipped.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$whl"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/bench
start=$(date +%s)
phase() {  # name limit_s command...
  local name=$1 limit=$2; shift 2
  [[ -z ${phases:-} || -z ${phases// /} || $phases == *" $name "* ]] || return 0
  local now=$(( $(date +%s) - start ))
  if (( now + 20 > budget )); then echo "== $name: skipped at ${now}s (budget ${budget}s)"; return; fi
  (( limit > budget - now )) && limit=$(( budget - now ))
  echo "== $name (t=${now}s, limit ${limit}s)"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1; echo "== $name rc=$?"
  grep -v -E "Warning|warn\(|register_constant|^\s*$" "$out/$name.log" | tail -n "${TAIL:-14}"
}
