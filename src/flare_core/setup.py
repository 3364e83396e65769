from setuptools import find_packages, setup

PACKAGE = "flare_core"

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
    description="Pure-Python core of the FLaRe stack: actions, embodiments, preprocessing, model card.",
    license="Apache-2.0",
)
