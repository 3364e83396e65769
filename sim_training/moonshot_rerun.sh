#!/usr/bin/env bash
# All four training families: FLaRe PPO continued from the ObjectNav + Pickup run at 2M env steps
# (runs/flare_10k_onp_long, made by dagger_rerun.sh) on ObjectNav, Pickup, Fetch and RoomVisit for 3M more env
# steps, with the same PPO settings; 500 unseen houses per family, the held-out families too. Finished steps are
# skipped when it runs again; an interrupted run resumes. Run from the repository root.
set -euo pipefail
PY=.venv/bin/python
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
FAMILIES=(objectnav pickup fetch roomvisit)
[ -f runs/flare_10k_4fam/eval.json ] || $PY -m flare_training ppo --init runs/flare_10k_onp_long \
  --out runs/flare_10k_4fam --families "${FAMILIES[@]}" --total-env-steps 3000000 --eval-every 200000 "${EARLIER[@]}"
mkdir -p runs/eval500
[ -f runs/eval500/flare_10k_4fam.json ] || $PY -m flare_training eval runs/flare_10k_4fam --episodes 500 \
  --families "${FAMILIES[@]}" objectnav_relative pickup_attribute --out runs/eval500/flare_10k_4fam.json
