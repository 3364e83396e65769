#!/usr/bin/env bash
# Longer BC (issue: the moonshot): the headed BC of goal_cells_rerun.sh trained 20 epochs instead of 10 on the
# same 10,000 demonstrations (its validation loss was still falling), then FLaRe PPO from it on ObjectNav + Pickup
# with the settings of flare_10k_cells, 1M env steps, then on all four training families (ObjectNav, Pickup,
# Fetch, RoomVisit) for 1M more env steps, continued to 1.5M (a copy). 500 unseen houses per family with
# `eval --why` (and the argmax of the four-family runs), the report (table and learning curves), and the last
# policy exported as the demo model. About 2 hours, one run at a time;
# finished steps are skipped when it runs again. Needs runs/bc_10k_cells (goal_cells_rerun.sh) for its
# demonstrations, and runs/perception. Run from the repository root.
set -euo pipefail
source sim_training/eval500.sh  # PY, EARLIER, FAMILIES, trained, eval500
[ -f runs/bc_10k_cells/demos.npz ] || { echo "needs runs/bc_10k_cells: run sim_training/goal_cells_rerun.sh" >&2; exit 1; }
if ! trained bc_10k_cells_20ep; then
  mkdir -p runs/bc_10k_cells_20ep && cp -n runs/bc_10k_cells/demos.npz runs/bc_10k_cells_20ep/
  $PY -m flare_training bc --out runs/bc_10k_cells_20ep --demos 10000 --epochs 20 --lr 1e-3 \
    --visual-from runs/perception --model-fusion film --model-goal-cells
fi
eval500 bc_10k_cells_20ep
trained flare_cells_20ep || $PY -m flare_training ppo --init runs/bc_10k_cells_20ep --out runs/flare_cells_20ep \
  --families objectnav pickup "${EARLIER[@]}"
eval500 flare_cells_20ep
FOUR=(--families objectnav pickup fetch roomvisit)
trained flare_cells_20ep_4fam || $PY -m flare_training ppo --init runs/flare_cells_20ep \
  --out runs/flare_cells_20ep_4fam "${FOUR[@]}" --total-env-steps 1000000 "${EARLIER[@]}"
eval500 flare_cells_20ep_4fam
if ! trained flare_cells_20ep_4fam_long; then  # the same run continued to 1.5M (a copy)
  [ -d runs/flare_cells_20ep_4fam_long ] || { cp -r runs/flare_cells_20ep_4fam runs/flare_cells_20ep_4fam_long
    rm -f runs/flare_cells_20ep_4fam_long/eval.json runs/flare_cells_20ep_4fam_long/.lock; }
  $PY -m flare_training ppo --init runs/flare_cells_20ep --out runs/flare_cells_20ep_4fam_long "${FOUR[@]}" \
    --total-env-steps 1500000 "${EARLIER[@]}"
fi
eval500 flare_cells_20ep_4fam_long
for run in flare_cells_20ep_4fam flare_cells_20ep_4fam_long; do
  [ -f "runs/eval500/${run}_argmax.json" ] || $PY -m flare_training eval "runs/$run" --episodes 500 "${FOUR[@]}" \
    --greedy --out "runs/eval500/${run}_argmax.json"
done
$PY -m flare_training report runs/bc_10k_cells_20ep runs/flare_10k_cells runs/flare_cells_20ep \
  runs/flare_cells_20ep_4fam_long --out docs/results/longer_bc --evals runs/eval500
$PY -m flare_training export runs/flare_cells_20ep_4fam_long models/gridhouse_demo --name gridhouse_demo
