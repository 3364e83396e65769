"""Thin ROS 2 nodes of the FLaRe stack: camera, policy and the robots' action bridges. Logic lives in
flare_core (episode loop, bridge, image decoding); these files only wire it to topics and parameters."""
