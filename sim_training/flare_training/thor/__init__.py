"""AI2-THOR: CHORES tasks on the Stretch, driven through ai2thor exactly as SPOC/FLaRe drive it."""
