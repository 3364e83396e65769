from setuptools import find_packages, setup

PACKAGE = "flare_robots"

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
    description="Robot backends for the FLaRe bridges: stretch_body, interbotix_xs_modules (lazy), and SDK fakes.",
    license="Apache-2.0",
)
