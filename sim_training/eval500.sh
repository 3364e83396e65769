# Sourced by the rerun scripts of the goal-cell pipeline (goal_cells_rerun.sh, pursuit_rerun.sh,
# longer_bc_rerun.sh): the interpreter, the PPO settings they share, and `eval500 RUN`: 500 unseen houses of each
# of the six families with `eval --why`, into runs/eval500/RUN.json (and .txt); skipped when already there.
PY=.venv/bin/python
EARLIER=(--minibatches 4 --critic-warmup-steps 20480 --normalize-advantages)
FAMILIES=(objectnav pickup fetch roomvisit objectnav_relative pickup_attribute)
trained() { [ -f "runs/$1/eval.json" ]; }
eval500() {
  mkdir -p runs/eval500
  [ -f "runs/eval500/$1.json" ] || $PY -m flare_training eval "runs/$1" --episodes 500 --families "${FAMILIES[@]}" \
    --why --out "runs/eval500/$1.json" | tee "runs/eval500/$1.txt"
}
