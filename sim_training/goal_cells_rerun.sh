#!/usr/bin/env bash
# Seeing the goal (issue: the moonshot): the FiLM policy with goal-cell heads (--model-goal-cells: a per-cell
# head on the goal-modulated feature maps, trained by BC on the simulator's "this cell shows the goal's object"
# labels, its logits part of the step token). BC from 10,000 demonstrations with the heads, learning rate 1e-3
# (at the default 2e-4 the heads barely learn); the same BC on the same
# demonstrations without them (the baseline); FLaRe PPO from the headed BC on ObjectNav + Pickup with the
# settings of dagger_rerun.sh, 1M env steps, continued to 2M (a copy). 500 unseen houses per family, with
# `eval --why`'s failure kinds, and the argmax of the 2M policy; the report (table and learning curves); the
# 2M policy exported as the demo model. Needs runs/perception (recipe_rerun.sh makes it). One run at a time (2 cores,
# about 1.5 hours); finished steps are skipped when it runs again. Run from the repository root.
set -euo pipefail
source sim_training/eval500.sh  # PY, EARLIER, FAMILIES, trained, eval500
FILM=(--visual-from runs/perception --model-fusion film)
trained bc_10k_cells || $PY -m flare_training bc --out runs/bc_10k_cells --demos 10000 --epochs 10 --lr 1e-3 \
  "${FILM[@]}" --model-goal-cells
eval500 bc_10k_cells
if ! trained bc_10k_same; then  # the same demonstrations, no heads
  mkdir -p runs/bc_10k_same && cp -n runs/bc_10k_cells/demos.npz runs/bc_10k_same/
  $PY -m flare_training bc --out runs/bc_10k_same --demos 10000 --epochs 10 --lr 1e-3 "${FILM[@]}"
fi
eval500 bc_10k_same
trained flare_10k_cells || $PY -m flare_training ppo --init runs/bc_10k_cells --out runs/flare_10k_cells \
  --families objectnav pickup "${EARLIER[@]}"
eval500 flare_10k_cells
if ! trained flare_10k_cells_long; then
  [ -d runs/flare_10k_cells_long ] || { cp -r runs/flare_10k_cells runs/flare_10k_cells_long
    rm -f runs/flare_10k_cells_long/eval.json runs/flare_10k_cells_long/.lock; }
  $PY -m flare_training ppo --init runs/bc_10k_cells --out runs/flare_10k_cells_long --families objectnav pickup \
    --total-env-steps 2000000 "${EARLIER[@]}"
fi
eval500 flare_10k_cells_long
[ -f runs/eval500/flare_10k_cells_long_argmax.json ] || $PY -m flare_training eval runs/flare_10k_cells_long \
  --episodes 500 --families objectnav pickup --greedy --out runs/eval500/flare_10k_cells_long_argmax.json
$PY -m flare_training report runs/bc_10k_same runs/bc_10k_cells runs/flare_10k_cells runs/flare_10k_cells_long \
  --out docs/results/goal_cells --evals runs/eval500
$PY -m flare_training export runs/flare_10k_cells_long models/gridhouse_demo --name gridhouse_demo
