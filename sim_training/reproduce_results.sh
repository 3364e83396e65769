#!/usr/bin/env bash
# Reproduces docs/results.md: BC, then in two parallel lanes (one torch thread each, so both cores work):
#   lane A: FLaRe PPO from BC (1M env steps), then the entropy 0.01 ablation (300k)
#   lane B: PPO from scratch (1M env steps), then the 10x learning-rate ablation (1M)
# then the shared-critic ablation (300k) alone, then the table and learning curves. About 60 minutes on a
# 2-core machine. A run that was interrupted resumes from its last update when this script runs again.
# Run from the repository root after `make test` (or `make setup`) has created .venv.
set -euo pipefail
PY=.venv/bin/python
FULL=${FULL:-1000000}
ABLATION=${ABLATION:-300000}
ppo() { $PY -m flare_training ppo --threads 1 "$@"; }

[ -f runs/bc/checkpoint.pt ] || $PY -m flare_training bc --out runs/bc
(
  ppo --init runs/bc --out runs/flare --total-env-steps "$FULL"
  ppo --init runs/bc --out runs/ablation_entropy_0.01 --total-env-steps "$ABLATION" --entropy-coef 0.01
) > runs/lane_a.log 2>&1 &
(
  ppo --visual-from runs/bc --out runs/scratch --total-env-steps "$FULL"
  ppo --init runs/bc --out runs/ablation_lr_10x --total-env-steps "$FULL" --lr-multiplier 10
) > runs/lane_b.log 2>&1 &
wait
$PY -m flare_training ppo --init runs/bc --out runs/ablation_shared_critic --total-env-steps "$ABLATION" --shared-critic
$PY -m flare_training report runs/bc runs/flare runs/scratch runs/ablation_* --out docs/results
