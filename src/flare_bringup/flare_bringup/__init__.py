"""Bringup of the FLaRe graph: one definition of its nodes for `ros2 launch` and for plain Python."""
