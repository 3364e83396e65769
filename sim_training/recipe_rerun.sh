#!/usr/bin/env bash
# FLaRe's recipe exact (the PPO defaults: 1 minibatch, 200k env steps of value-only warm-up, no advantage
# normalisation) beside the earlier defaults (4 minibatches, 5 warm-up updates = 20,480 env steps, normalised
# advantages), both from the same BC checkpoint on ObjectNav + Pickup at 1M env steps, 500 unseen houses each.
# One run at a time (2 cores); finished steps are skipped when it runs again. Run from the repository root.
set -euo pipefail
PY=.venv/bin/python
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
trained() { [ -f "runs/$1/eval.json" ]; }
eval500() {
  mkdir -p runs/eval500
  [ -f "runs/eval500/$1.json" ] || $PY -m flare_training eval "runs/$1" --episodes 500 \
    --families objectnav pickup objectnav_relative pickup_attribute --out "runs/eval500/$1.json"
}
[ -f runs/perception/checkpoint.pt ] || $PY -m flare_training perception --out runs/perception
trained bc_pre2k || $PY -m flare_training bc --out runs/bc_pre2k --demos 2000 --epochs 10 \
  --visual-from runs/perception --model-fusion film
eval500 bc_pre2k
trained flare_recipe_onp || $PY -m flare_training ppo --init runs/bc_pre2k --out runs/flare_recipe_onp \
  --families objectnav pickup
eval500 flare_recipe_onp
trained flare_earlier_onp || $PY -m flare_training ppo --init runs/bc_pre2k --out runs/flare_earlier_onp \
  --families objectnav pickup "${EARLIER[@]}"
eval500 flare_earlier_onp
$PY -m flare_training report runs/bc_pre2k runs/flare_recipe_onp runs/flare_earlier_onp --out docs/results/recipe \
  --evals runs/eval500
