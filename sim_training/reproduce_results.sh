#!/usr/bin/env bash
# Reproduces docs/results.md: BC, FLaRe PPO from BC, PPO from scratch, and the three ablations, each with the
# same 1M env-step budget, then the table and learning curves. About 2 hours on a 2-core machine.
# Run from the repository root after `make test` (or `make setup`) has created .venv.
set -euo pipefail
PY=.venv/bin/python
STEPS=${STEPS:-1000000}

[ -f runs/bc/checkpoint.pt ] || $PY -m flare_training bc --out runs/bc
$PY -m flare_training ppo --init runs/bc --out runs/flare --total-env-steps "$STEPS"
$PY -m flare_training ppo --visual-from runs/bc --out runs/scratch --total-env-steps "$STEPS"
$PY -m flare_training ppo --init runs/bc --out runs/ablation_entropy_0.01 --total-env-steps "$STEPS" --entropy-coef 0.01
$PY -m flare_training ppo --init runs/bc --out runs/ablation_shared_critic --total-env-steps "$STEPS" --shared-critic
$PY -m flare_training ppo --init runs/bc --out runs/ablation_lr_10x --total-env-steps "$STEPS" --lr-multiplier 10
$PY -m flare_training report runs/bc runs/flare runs/scratch runs/ablation_* --out docs/results
