#!/usr/bin/env bash
# A stronger start for RL: BC from 10,000 demonstrations (5x the earlier runs), the same followed by 3 DAgger
# rounds (the policy plays, the expert labels the states it visits), and FLaRe PPO from the 10,000-demonstration
# BC on ObjectNav + Pickup with the PPO settings that learned faster at 1M in docs/results.md, 1M env steps and
# continued to 2M (a copy); 500 unseen houses per family. Needs runs/perception (recipe_rerun.sh makes it).
# One run at a time (2 cores, about 2 hours); finished steps are skipped when it runs again. Run from the
# repository root.
set -euo pipefail
PY=.venv/bin/python
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
FILM=(--visual-from runs/perception --model-fusion film)
trained() { [ -f "runs/$1/eval.json" ]; }
eval500() {
  mkdir -p runs/eval500
  [ -f "runs/eval500/$1.json" ] || $PY -m flare_training eval "runs/$1" --episodes 500 \
    --families objectnav pickup objectnav_relative pickup_attribute --out "runs/eval500/$1.json"
}
trained bc_10k || $PY -m flare_training bc --out runs/bc_10k --demos 10000 --epochs 10 "${FILM[@]}"
eval500 bc_10k
if ! trained bc_10k_dagger; then  # the same 10,000 demonstrations, 8 epochs, then 3 DAgger rounds
  mkdir -p runs/bc_10k_dagger && cp -n runs/bc_10k/demos.npz runs/bc_10k_dagger/
  $PY -m flare_training bc --out runs/bc_10k_dagger --demos 10000 --epochs 8 --dagger-rounds 3 \
    --dagger-episodes 3000 --dagger-epochs 2 "${FILM[@]}"
fi
eval500 bc_10k_dagger
trained flare_10k_onp || $PY -m flare_training ppo --init runs/bc_10k --out runs/flare_10k_onp \
  --families objectnav pickup "${EARLIER[@]}"
eval500 flare_10k_onp
if ! trained flare_10k_onp_long; then
  [ -d runs/flare_10k_onp_long ] || { cp -r runs/flare_10k_onp runs/flare_10k_onp_long
    rm -f runs/flare_10k_onp_long/eval.json runs/flare_10k_onp_long/.lock; }
  $PY -m flare_training ppo --init runs/bc_10k --out runs/flare_10k_onp_long --families objectnav pickup \
    --total-env-steps 2000000 "${EARLIER[@]}"
fi
eval500 flare_10k_onp_long
$PY -m flare_training report runs/bc_10k runs/bc_10k_dagger runs/flare_10k_onp runs/flare_10k_onp_long \
  --out docs/results/bc10k --evals runs/eval500
