#!/usr/bin/env bash
# Reproduces docs/results.md's main table (the pipeline that works here): the frozen perception encoder, BC
# from 2,000 expert demonstrations with FiLM fusion, then on ObjectNav + Pickup: FLaRe PPO (1M env steps), PPO
# from scratch over the same frozen encoder (1M), and the three ablations (entropy 0.01, shared actor-critic,
# 10x learning rate; ABLATION env steps each), then 500-house evaluations, the table and learning curves.
# One run at a time: two torch trainings on 2 cores thrash. About 2.5 hours on a 2-core machine; a run that
# was interrupted resumes from its last update when this script runs again (finished runs are skipped).
# Run from the repository root after `make test` (or `make setup`) has created .venv.
set -euo pipefail
PY=.venv/bin/python
ABLATION=${ABLATION:-500000}
FAMILIES=(objectnav pickup)
done_() { [ -f "runs/$1/eval.json" ]; }
# The defaults these results were measured with (the current defaults are FLaRe's recipe exact: recipe_rerun.sh).
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
ppo() { local out=$1; shift; done_ "$out" || $PY -m flare_training ppo --out "runs/$out" --families "${FAMILIES[@]}" \
  "${EARLIER[@]}" "$@"; }

[ -f runs/perception/checkpoint.pt ] || $PY -m flare_training perception --out runs/perception
done_ bc_pre2k || $PY -m flare_training bc --out runs/bc_pre2k --demos 2000 --epochs 10 \
  --visual-from runs/perception --model-fusion film
ppo flare_pre2k_onp --init runs/bc_pre2k
ppo scratch_pre2k_onp --visual-from runs/bc_pre2k
ppo ablation_onp_entropy_0.01 --init runs/bc_pre2k --total-env-steps "$ABLATION" --entropy-coef 0.01
ppo ablation_onp_shared_critic --init runs/bc_pre2k --total-env-steps "$ABLATION" --shared-critic
ppo ablation_onp_lr_10x --init runs/bc_pre2k --total-env-steps "$ABLATION" --lr-multiplier 10
RUNS=(bc_pre2k flare_pre2k_onp scratch_pre2k_onp ablation_onp_entropy_0.01 ablation_onp_shared_critic ablation_onp_lr_10x)
mkdir -p runs/eval500
for run in "${RUNS[@]}"; do
  [ -f "runs/eval500/$run.json" ] || $PY -m flare_training eval "runs/$run" --episodes 500 \
    --families objectnav pickup objectnav_relative pickup_attribute --out "runs/eval500/$run.json"
done
$PY -m flare_training report "${RUNS[@]/#/runs/}" --out docs/results/pipeline --evals runs/eval500
