#!/usr/bin/env bash
# The pursuit loss (ppo --pursuit-coef): FLaRe PPO from the headed BC (runs/bc_10k_cells, made by
# goal_cells_rerun.sh) on ObjectNav + Pickup with the settings of flare_10k_cells, plus 0.5 x the cross-entropy to
# the expert's action on the steps whose view shows the goal's object; 1M env steps. 500 unseen houses per
# family with `eval --why`, and the report beside flare_10k_cells (table and learning curves). About 35 minutes
# (the expert slows the envs); finished steps are skipped when it runs again. Run from the repository root.
set -euo pipefail
source sim_training/eval500.sh  # PY, EARLIER, FAMILIES, trained, eval500
[ -f runs/bc_10k_cells/eval.json ] && [ -f runs/eval500/flare_10k_cells.json ] || {
  echo "needs runs/bc_10k_cells and runs/flare_10k_cells: run sim_training/goal_cells_rerun.sh first" >&2; exit 1; }
trained flare_cells_pursuit || $PY -m flare_training ppo --init runs/bc_10k_cells --out runs/flare_cells_pursuit \
  --families objectnav pickup "${EARLIER[@]}" --pursuit-coef 0.5
eval500 flare_cells_pursuit
$PY -m flare_training report runs/flare_10k_cells runs/flare_cells_pursuit --out docs/results/pursuit --evals runs/eval500
