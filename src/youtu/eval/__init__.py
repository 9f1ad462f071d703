"""youtu.eval: evaluation of our checkpoints, any HF folder or any OpenAI-compatible endpoint.

    youtu eval runs/tiny/sft                       # every task group of the [eval] section
    youtu-lm-eval --model youtu --model_args pretrained=runs/tiny/sft --tasks hellaswag

Modules: `harness` (log-likelihoods, rolling bits per byte, generate-until; backends for our
checkpoints and HF folders) and `endpoint` (OpenAI completions API); `extract` (answer
extraction rules and judges) and `aptbench` (the APTBench-format runner, tasks as TOML data in
`tasks/aptbench.toml`); `probes` (APTBench-style items from our environments at held-out
seeds); `tasks/` (agentic cloze: multiple choice by log-likelihood in the chat format,
bits per byte, word problems, HumanEval, function calling, needle);
`lm_eval_plugin` (lm-evaluation-harness model `youtu`); `runner` (`youtu eval`) and `report`
(markdown + PNG comparisons).
"""
