from setuptools import find_packages, setup

PACKAGE = "flare_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    zip_safe=True,
    maintainer="FLaRe stack maintainers",
    maintainer_email="flare@example.org",
    description="ROS 2 nodes of the FLaRe stack: camera, policy, Stretch RE1 and LoCoBot action bridges.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "camera_node = flare_ros.camera_node:main",
            "policy_node = flare_ros.policy_node:main",
            "stretch_bridge = flare_ros.bridge_node:stretch_main",
            "locobot_bridge = flare_ros.bridge_node:locobot_main",
        ]
    },
)
