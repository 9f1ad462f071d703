#!/usr/bin/env bash
# The engine and data measurements still open on the H200 (issues 22 and 23), in one device call:
#   bash bench/h200_engine_suite.sh WHEEL_DIR OUT_DIR
# Phases in order of importance, each in its own process and under its own time limit (a
# failure shows and the rest runs); a phase that would start after BUDGET_S seconds is skipped.
#   gputests  every gpu-marked test (kernels, CUDA graphs, fused/overlapped/Triton-GEMV decode,
#             FP8, runsafe signals, RL on CUDA), never run together on the merged tree
#   decode    batch 1 / 32 and 32k context, every decode variant, transformers in the same run
#   data      datatrove pipeline vs the one-process baseline at 1..16 workers (16 cores)
#   gemv      the per-weight GEMV table: cuBLAS, the same work as torch ops, the Triton
#             decode GEMV (--triton autotunes ~60 compiles: ~2-3 min)
#   firstuse  what a new prefill shape costs the first time, cuDNN attention vs plain SDPA,
#             small preset (the first model's extra eval time, issue 15)
#   queries   the decode queries kernel (W_uk absorption, RoPE, kv_a_layernorm) per latent block
#   attn      the fused decode attention at forced split counts, short caches (latency-bound)
#   attnlong  the same at 8k-131k caches per split-kernel launch config (BLOCK_N x stages x
#             warps): at 32k the kernel read ~0.9 TB/s on an H200 (2026-12-04), far from HBM
#   ab        the batch-1 engine step (128 and 8k context) of older trees (OLD_SRC: a dir, or
#             "label=dir ..." words, e.g. a carried `git archive <sha> src | tar -x -C .old`),
#             then of this one, then the first again, one after the other in
#             this call: kernel-level changes (split rule, the kernel's cache write) timed
#             against their peer on the same machine
#   pdl       the Triton GEMVs with programmatic dependent launch: per weight, then the batch-1
#             engine step without and with it (gemv="auto+pdl", the default since 2026-12-07)
# WHEEL_DIR: the default wheels of ../shared/device/fetch-wheels.sh plus
#   datatrove==0.10.1 orjson==3.13.0 gguf==0.19.0 torchao==0.18.0 markdown-it-py==4.3.0 mdurl
#   tiktoken==0.14.0 tzdata loguru==0.7.3 multiprocess==0.70.19 dill==0.4.1 humanize
# YOUTU_COMMIT=<sha> names the tree in the benches' output (the device copy's git HEAD can be stale).
# gputests took more than 240 s on an H100 (61 of 73 tests by then, 2026-12-07). data at 48,000
# documents ran past its 150 s with no row printed (2026-12-07): rows now print as they end.
# GPU_TESTS (default: tests) narrows the gpu tests, e.g. "tests/serve tests/rl"; GEMV_BATCH
# (default: 1,8) the GEMV rows, e.g. 2,4 (each batch autotunes again: ~1 min more per batch).
# PDL_ARGS adds to the pdl phase's engine run, e.g. --profile (kernels of the last variant).
# DECODE_VARIANTS / LONG_LENS replace the decode phase's variants and long contexts, e.g.
# DECODE_VARIANTS=fused+overlap+auto,fused+overlap+auto+pdl LONG_LENS=8192,32768,131072.
# ATTNLONG_CASES / ATTNLONG_SPLITS / ATTNLONG_CONFIGS replace the attnlong sweep's (BxL, split counts,
# BLOCK_NxSTAGESxWARPS).
# PHASES (default: all ten; ab only with OLD_SRC) picks some, e.g. PHASES="gputests decode" for one call and
# PHASES="data gemv" for the next.
set -u
whl=$1; out=$2; budget=${BUDGET_S:-560}; phases=" ${PHASES:-gputests decode data gemv firstuse queries attn attnlong ab pdl} "
TAIL=24
source "$(dirname "$0")/h200_phases.sh"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
phase gputests 330 python3 -m pytest -q -m gpu -p no:cacheprovider ${GPU_TESTS:-tests}
phase decode 300 python3 bench/decode.py --preset youtu_2b --reps 2 \
  --variants ${DECODE_VARIANTS:-today,fused+overlap,fused+overlap+auto,fused+overlap+gemv} \
  --long-lens ${LONG_LENS:-32768} --long-reps 2 --peer-max-len 32768
phase data 290 python3 bench/data_throughput.py --workers 1 2 4 8 16 --tasks 16 --baseline-workers 16 \
  --jsonl-docs 32000 --jsonl-files 32 --skip-embedded --control-units 32 ${DATA_ARGS:-}
phase gemv 200 python3 bench/decode_gemv.py --batch ${GEMV_BATCH:-1,8} --triton
phase firstuse 120 python3 bench/first_use.py
phase queries 60 python3 bench/decode_queries.py --block-c 16,32,64,128 --batch 1,8
phase attnlong 150 python3 bench/decode_attention.py --cases ${ATTNLONG_CASES:-1x8192,1x32768,1x131072,8x32768} \
  --splits ${ATTNLONG_SPLITS:-0,128,256,512} --configs ${ATTNLONG_CONFIGS:-32x2x4,32x2x8,64x2x8,32x3x4,16x4x4,64x2x4}
phase attn 90 python3 bench/decode_attention.py --cases 1x128,1x256,1x512,1x1024,1x4096,8x256,32x640 \
  --splits 0,1,2,4,8,16
ab_run() {  # src_dir label [variants]
  PYTHONPATH=/tmp/site:$1:$PWD/bench python3 bench/decode.py --preset youtu_2b --batches 1 \
    --prompt-lens 128 --reps 3 --long-lens 8192 --long-reps 2 --no-peer \
    --variants "${3:-fused+overlap+auto}" | sed "s/^/[$2] /"
}
# OLD_SRC: "dir" or "label=dir label=dir ...": each, then this tree (with AB_NEW_VARIANTS, e.g.
# "fused+overlap+auto,fused+overlap+auto+pdl"), then the first again unless AB_REPEAT=0.
# AB_OLD_VARIANTS: the older trees' variants (default fused+overlap+auto).
if [[ -n ${OLD_SRC:-} ]]; then
  ab_cmds=""; first=""
  for entry in $OLD_SRC; do
    [[ $entry == *=* ]] || entry="old=$entry"
    ab_cmds+="ab_run ${entry#*=} ${entry%%=*} ${AB_OLD_VARIANTS:-} && "
    [[ -n $first ]] || first="ab_run ${entry#*=} ${entry%%=*} ${AB_OLD_VARIANTS:-}"
  done
  [[ ${AB_REPEAT:-1} == 0 ]] && first=true
  phase ab 330 bash -c "$(declare -f ab_run); ${ab_cmds}ab_run $PWD/src new ${AB_NEW_VARIANTS:-fused+overlap+auto} && $first"
fi
phase pdl 240 bash -c "python3 bench/decode_gemv.py --batch 1 --triton --pdl && \
  python3 bench/decode.py --preset youtu_2b --batches 1 --prompt-lens 128 --reps 3 \
  --long-lens '' --no-peer --variants fused+overlap+auto,fused+overlap+auto+pdl ${PDL_ARGS:-}"
echo "== done at $(( $(date +%s) - start ))s"
