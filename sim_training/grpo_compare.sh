#!/usr/bin/env bash
# GRPO (SimpleVLA-RL's settings) beside FLaRe PPO from the same BC checkpoint on ObjectNav + Pickup, 500
# unseen houses per family: GRPO at 500k and 1M env steps (one run, resumed past each budget) and at the
# longest budget (LONG, default 1.5M) beside FLaRe PPO resumed from its 1M run; sampled and greedy (the robot's
# policy node) evaluations; GRPO's ablations at 500k (no dynamic sampling, the symmetric clip [0.8, 1.2],
# temperature 1.0, also continued to 1M) and a 5x learning rate. Needs runs/bc_pre2k and runs/flare_recipe_onp (recipe_rerun.sh).
# One run at a time (2 cores); finished steps are skipped when it runs again. Run from the repository root.
set -euo pipefail
PY=.venv/bin/python
LONG=${LONG:-1500000}
FAMILIES=(objectnav pickup)
reached() { [ -f "runs/$1/eval.json" ] && $PY -c "import json,sys; sys.exit(json.load(open('runs/$1/eval.json'))['env_steps'] < $2)"; }
# 500 houses per family: sampled (as every table here) and greedy (what the robot's policy node does).
eval500() {
  local run=$1; shift
  local families=("$@"); [ ${#families[@]} -gt 0 ] || families=(objectnav pickup objectnav_relative pickup_attribute)
  mkdir -p runs/eval500 runs/eval500_greedy
  [ -f "runs/eval500/$run.json" ] || $PY -m flare_training eval "runs/$run" --episodes 500 \
    --families "${families[@]}" --out "runs/eval500/$run.json"
  [ -f "runs/eval500_greedy/$run.json" ] || $PY -m flare_training eval "runs/$run" --episodes 500 --greedy \
    --families "${families[@]}" --out "runs/eval500_greedy/$run.json"
}
# A run continued to a larger budget from a copy of its shorter self (the copy keeps the shorter result).
extend() {
  local from=$1 to=$2 steps=$3 cmd=$4; shift 4
  reached "$to" "$steps" && return
  [ -d "runs/$to" ] || { cp -r "runs/$from" "runs/$to"; rm -f "runs/$to/eval.json" "runs/$to/.lock"; }
  $PY -m flare_training "$cmd" --out "runs/$to" --total-env-steps "$steps" --families "${FAMILIES[@]}" "$@"
}
ablation() { local out=$1; shift; reached "$out" 500000 || $PY -m flare_training grpo --init runs/bc_pre2k \
  --out "runs/$out" --families "${FAMILIES[@]}" --total-env-steps 500000 "$@"; eval500 "$out" "${FAMILIES[@]}"; }

ablation grpo_onp_500k
eval500 bc_pre2k
eval500 flare_recipe_onp
extend grpo_onp_500k grpo_onp 1000000 grpo; eval500 grpo_onp
ablation grpo_500k_lr_1e-4 --lr 1e-4
ablation grpo_500k_no_dynamic_sampling --no-dynamic-sampling
ablation grpo_500k_symmetric_clip --clip-high 0.2
ablation grpo_500k_temperature_1 --temperature 1.0
extend grpo_500k_temperature_1 grpo_temperature_1_1m 1000000 grpo --temperature 1.0; eval500 grpo_temperature_1_1m
# The longest GRPO run continues the default run, or (GRPO_LONG_FROM) a variant that did better at 500k.
extend "${GRPO_LONG_FROM:-grpo_onp}" grpo_onp_long "$LONG" grpo; eval500 grpo_onp_long
extend flare_recipe_onp flare_recipe_onp_long "$LONG" ppo; eval500 flare_recipe_onp_long
# Learning curves and the sampled 500-house tables (the 500k and 1M runs are the start of the longest ones);
# docs/results.md gathers the greedy figures from runs/eval500_greedy.
$PY -m flare_training report runs/bc_pre2k runs/flare_recipe_onp_long runs/grpo_onp_long --out docs/results/grpo \
  --evals runs/eval500
$PY -m flare_training report runs/grpo_onp_500k runs/grpo_500k_no_dynamic_sampling runs/grpo_500k_symmetric_clip \
  runs/grpo_500k_temperature_1 runs/grpo_500k_lr_1e-4 --out docs/results/grpo_ablations --evals runs/eval500
