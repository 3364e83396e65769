from setuptools import find_packages, setup

PACKAGE = "flare_sim"

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
    description="Gridhouse: the embedded BabyAI-based simulator with CHORES-style tasks and an expert.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["gridhouse_demo = flare_sim.demo:main"]},
)
