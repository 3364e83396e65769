#!/usr/bin/env bash
# GRPO (SimpleVLA-RL's settings) beside FLaRe PPO from the same BC checkpoint on ObjectNav + Pickup: GRPO at
# 500k, 1M and 2M env steps (one run, resumed past each budget), its three ablations at 500k (no dynamic
# sampling, the symmetric clip [0.8, 1.2], temperature 1.0) and FLaRe PPO resumed from its 1M run to 2M; 500
# unseen houses per family at every budget. Needs runs/bc_pre2k and runs/flare_recipe_onp (recipe_rerun.sh).
# One run at a time (2 cores); finished steps are skipped when it runs again. Run from the repository root.
set -euo pipefail
PY=.venv/bin/python
FAMILIES=(objectnav pickup)
reached() { [ -f "runs/$1/eval.json" ] && $PY -c "import json,sys; sys.exit(json.load(open('runs/$1/eval.json'))['env_steps'] < $2)"; }
eval500() {
  mkdir -p runs/eval500
  [ -f "runs/eval500/$1.json" ] || $PY -m flare_training eval "runs/$1" --episodes 500 \
    --families objectnav pickup objectnav_relative pickup_attribute --out "runs/eval500/$1.json"
}
# A run continued to a larger budget from a copy of its shorter self (the copy keeps the shorter result).
extend() {
  local from=$1 to=$2 steps=$3 cmd=$4; shift 4
  reached "$to" "$steps" && return
  [ -d "runs/$to" ] || { cp -r "runs/$from" "runs/$to"; rm -f "runs/$to/eval.json" "runs/$to/.lock"; }
  $PY -m flare_training "$cmd" --out "runs/$to" --total-env-steps "$steps" --families "${FAMILIES[@]}" "$@"
}
grpo() { local out=$1; shift; reached "$out" 500000 || $PY -m flare_training grpo --init runs/bc_pre2k \
  --out "runs/$out" --families "${FAMILIES[@]}" --total-env-steps 500000 "$@"; eval500 "$out"; }

grpo grpo_onp_500k
extend grpo_onp_500k grpo_onp 1000000 grpo; eval500 grpo_onp
grpo grpo_500k_no_dynamic_sampling --no-dynamic-sampling
grpo grpo_500k_symmetric_clip --clip-high 0.2
grpo grpo_500k_temperature_1 --temperature 1.0
extend grpo_onp grpo_onp_2m 2000000 grpo; eval500 grpo_onp_2m
extend flare_recipe_onp flare_recipe_onp_2m 2000000 ppo; eval500 flare_recipe_onp_2m
$PY -m flare_training report runs/bc_pre2k runs/flare_recipe_onp runs/grpo_onp runs/flare_recipe_onp_2m \
  runs/grpo_onp_2m --out docs/results/grpo --evals runs/eval500
$PY -m flare_training report runs/grpo_onp_500k runs/grpo_500k_no_dynamic_sampling runs/grpo_500k_symmetric_clip \
  runs/grpo_500k_temperature_1 --out docs/results/grpo_ablations --evals runs/eval500
