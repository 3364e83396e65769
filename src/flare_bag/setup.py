from setuptools import find_packages, setup

PACKAGE = "flare_bag"

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
    description="ROS 2 bags of FLaRe runs: recorder node and open-loop replay evaluation (rosbags).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recorder = flare_bag.record:main",
            "replay = flare_bag.replay:main",
        ]
    },
)
