#!/usr/bin/env bash
# Source ROS 2 and the FLaRe workspace, then run the given command (default: the simulated Stretch graph).
set -e
source /opt/ros/jazzy/setup.bash
source /flare/install/setup.bash
exec "$@"
