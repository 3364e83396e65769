# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv on first use.
# Where a system ROS 2 Jazzy is installed (/opt/ros/jazzy, as on a robot), setup uses it: the venv sees the
# system packages, the PyPI ROS wheels are skipped, and every command runs with its setup.bash sourced.

ROS_SETUP := $(wildcard /opt/ros/jazzy/setup.bash)
ifneq ($(ROS_SETUP),)
PYTHON ?= /usr/bin/python3
VENV_FLAGS := --system-site-packages
ROS_REQUIREMENTS :=
RUN := . $(ROS_SETUP) &&
else
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV_FLAGS :=
ROS_REQUIREMENTS := -r requirements-ros.txt
RUN :=
endif
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the pins or a package's setup change.
SETUP_STAMP := $(VENV)/.setup-done
PACKAGES := src/flare_core src/flare_sim src/flare_robots src/flare_ros src/flare_bag src/flare_bringup sim_training

.PHONY: setup build demo test lint format bench clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): requirements.txt requirements-ros.txt $(wildcard src/*/setup.py) sim_training/pyproject.toml
	@echo ">> creating $(VENV) and installing pinned dependencies (first run: a few minutes)"
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt $(ROS_REQUIREMENTS) 2>&1 | grep -v "^WARNING: Location" || true
	@# ai2thor 5.0.0 from PyPI for `ai2thor.server.Event`, which the AI2-THOR stand-in returns; its other
	@# requirements (opencv-python would shadow opencv-python-headless) are for running Unity, not needed here.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps ai2thor==5.0.0 2>&1 | grep -v "^WARNING: Location" || true
	$(RUN) $(BIN)/python -c "import torch, rclpy, minigrid, onnxruntime, ai2thor.server" || { echo "!! dependency install failed: see pip output above"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation $(addprefix -e ,$(PACKAGES)) 2>&1 | grep -v "^WARNING: Location" || true
	$(RUN) $(BIN)/python -c "import flare_core, flare_sim, flare_robots, flare_ros, flare_bag, flare_bringup, flare_training" || { echo "!! installing the workspace packages failed"; exit 1; }
	touch $@

# colcon builds the ament_python workspace exactly as on a robot (build/, install/, log/).
build: $(SETUP_STAMP)
	$(RUN) $(BIN)/colcon --log-base log build --base-paths src --build-base build --install-base install --event-handlers console_cohesion- summary+

# The main job: the ROS 2 graph (policy node + Stretch bridge on the simulated robot, shipped demo model)
# runs episodes from goal messages and prints success and decision latency.
demo: build
	$(RUN) $(BIN)/python -m flare_bringup.demo

lint: $(SETUP_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(SETUP_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: build lint
	$(RUN) $(BIN)/python -m pytest

bench: $(SETUP_STAMP)
	$(RUN) $(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf build install log .pytest_cache .ruff_cache
