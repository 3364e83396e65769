from glob import glob

from setuptools import find_packages, setup

PACKAGE = "flare_bringup"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["fastdds_frames.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),  # launch -> ../../launch
        (f"share/{PACKAGE}/models/gridhouse_demo", glob("models/gridhouse_demo/*")),  # models -> ../../models
    ],
    zip_safe=False,
    maintainer="FLaRe stack maintainers",
    maintainer_email="flare@example.org",
    description="Bringup of the FLaRe graph: launch files, parameters, the shipped demo model, the demo job.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "flare_graph = flare_bringup.graph:main",
            "flare_demo = flare_bringup.demo:main",
        ]
    },
)
