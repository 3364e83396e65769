"""FLaRe training workspace: policy model, behaviour cloning, PPO fine-tuning and evaluation (torch)."""
