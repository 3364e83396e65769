"""Test-wide settings: ROS 2 traffic stays on this machine, in a domain of its own per run."""

import os
import random

# Fast DDS discovery only on loopback, and a domain ID unlikely to meet another run on the same machine.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
