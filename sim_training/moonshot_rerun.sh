#!/usr/bin/env bash
# Toward the moonshot (>= 80 % ObjectNav and Pickup, Fetch and RoomVisit >= 30 %):
# 1. all four training families: FLaRe PPO continued from the ObjectNav + Pickup run at 2M env steps
#    (runs/flare_10k_onp_long, made by dagger_rerun.sh) on ObjectNav, Pickup, Fetch and RoomVisit for 1.5M more
#    env steps (train success stayed flat on all four from the start);
# 2. a stronger start again: BC from 30,000 demonstrations (3x), 4 epochs, then FLaRe PPO on ObjectNav + Pickup
#    with the same settings as from the 10,000-demonstration BC, 1M env steps, and continued to 2M (a copy).
# 500 unseen houses per family. Finished steps are skipped when it runs again; an interrupted run resumes. One
# run at a time (2 cores, about 2 hours). Needs runs/perception (recipe_rerun.sh). Run from the repository root.
set -euo pipefail
PY=.venv/bin/python
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
FILM=(--visual-from runs/perception --model-fusion film)
trained() { [ -f "runs/$1/eval.json" ]; }
eval500() {  # run, then its families
  local run=$1; shift
  mkdir -p runs/eval500
  [ -f "runs/eval500/$run.json" ] || $PY -m flare_training eval "runs/$run" --episodes 500 --families "$@" \
    --out "runs/eval500/$run.json"
}
trained flare_10k_4fam || $PY -m flare_training ppo --init runs/flare_10k_onp_long --out runs/flare_10k_4fam \
  --families objectnav pickup fetch roomvisit --total-env-steps 1500000 --eval-every 200000 "${EARLIER[@]}"
trained bc_30k || $PY -m flare_training bc --out runs/bc_30k --demos 30000 --epochs 4 "${FILM[@]}"
trained flare_30k_onp || $PY -m flare_training ppo --init runs/bc_30k --out runs/flare_30k_onp \
  --families objectnav pickup "${EARLIER[@]}"
if ! trained flare_30k_onp_long; then
  [ -d runs/flare_30k_onp_long ] || { cp -r runs/flare_30k_onp runs/flare_30k_onp_long
    rm -f runs/flare_30k_onp_long/eval.json runs/flare_30k_onp_long/.lock; }
  $PY -m flare_training ppo --init runs/bc_30k --out runs/flare_30k_onp_long --families objectnav pickup \
    --total-env-steps 2000000 "${EARLIER[@]}"
fi
eval500 bc_30k objectnav pickup fetch roomvisit objectnav_relative pickup_attribute
eval500 flare_30k_onp objectnav pickup fetch roomvisit objectnav_relative pickup_attribute
eval500 flare_30k_onp_long objectnav pickup fetch roomvisit objectnav_relative pickup_attribute
eval500 flare_10k_4fam objectnav pickup fetch roomvisit objectnav_relative pickup_attribute
