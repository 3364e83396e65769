"""ROS 2 bags of FLaRe runs: record the policy-relevant topics from a running graph, and replay a bag through
a policy offline (rosbags: no ROS install needed to replay)."""
