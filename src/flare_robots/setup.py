from glob import glob

from setuptools import find_packages, setup

PACKAGE = "flare_robots"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["*/config.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *[(f"share/{PACKAGE}/{p.split('/')[1]}", [p]) for p in glob(f"{PACKAGE}/*/config.yaml")],
    ],
    zip_safe=False,
    maintainer="FLaRe stack maintainers",
    maintainer_email="flare@example.org",
    description="The robots of the FLaRe stack, one folder each: embodiment, backends, SDK fakes, graph parameters.",
    license="Apache-2.0",
)
