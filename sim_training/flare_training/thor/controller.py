"""The Stretch in AI2-THOR, driven exactly as SPOC/FLaRe drive it (FLaRe `environment/stretch_controller.py`).

One `StretchController` per env process owns one ai2thor `Controller`: it builds it with FLaRe's arguments
(`utils/constants/stretch_initialization_utils.py:STRETCH_ENV_ARGS`), resets houses with FLaRe's sequence
(nav meshes, horizon 0, camera calibration, magnet hidden, object filter on), turns each of the 20 policy actions
into FLaRe's ai2thor call (`agent_step`) and overwrites `lastActionSuccess` as FLaRe does, from the change in the
robot's state. A Unity timeout restarts the controller (`UnityLost` tells the env to retry its episode).

ai2thor is imported only here and only when a controller starts, so the rest of the project runs without it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flare_core.actions import action_by_index

# FLaRe's AI2-THOR build (`STRETCH_COMMIT_ID`), installed from Allen AI's package index, not PyPI.
FLARE_THOR_COMMIT = "966bd7758586e05d18f6181f459c0e90ba318bec"
THOR_INDEX = "https://ai2thor-pypi.allenai.org"
DEFAULT_CONTROLLER = "ai2thor.controller:Controller"
ASSETS_HINT = (
    "python -m objathor.dataset.download_annotations --version 2023_07_28 --path DIR && "
    "python -m objathor.dataset.download_assets --version 2023_07_28 --path DIR (then --thor-assets DIR/2023_07_28)"
)
INSTALL_HINT = f"pip install --extra-index-url {THOR_INDEX} ai2thor==0+{FLARE_THOR_COMMIT}"

# FLaRe's STRETCH_ENV_ARGS (server_class, commit_id, platform and the asset hook are added at start).
STRETCH_ENV_ARGS = dict(
    gridSize=0.15,
    width=396,
    height=224,
    visibilityDistance=0.8673349051766235,
    visibilityScheme="Distance",
    fieldOfView=59,
    useMassThreshold=True,
    massThreshold=10,
    autoSimulation=False,
    autoSyncTransforms=True,
    renderInstanceSegmentation=True,
    agentMode="stretch",
    renderDepthImage=False,
    cameraNearPlane=0.01,
    branch=None,
    server_timeout=1200,
    snapToGrid=False,
    fastActionEmit=True,
)
NAV_MESH_RADII = (0.5, 0.4, 0.3, 0.2)  # AGENT_RADIUS_LIST: nav mesh i has agent radius NAV_MESH_RADII[i]
NAV_MESH = dict(agentHeight=1.8, agentSlope=10, agentClimb=0.5, voxelSize=0.1666667)
CROP_SIDE = 6  # px cut from each side of a 396 px wide frame: round(396 * 6 / 396) -> 224 x 384

MOVE, ROTATE, ARM, WRIST = 0.2, 30.0, 0.1, 10.0  # AGENT_MOVEMENT_CONSTANT, AGENT_ROTATION_DEG, ARM_MOVE_CONSTANT,...
WRIST_BOUND_1, WRIST_BOUND_2 = 75.0, -260.0  # STRETCH_WRIST_BOUND_1/2: the wrist cannot enter (75, 100) degrees
LIFT_OFFSET = 0.16297650337219238  # joints[0]'s root-relative y minus the lift the arm actions move
ARM_ARGS = dict(returnToStart=True, speed=1)  # ADDITIONAL_ARM_ARGS
# FLaRe's `_universal_state_tolerance`: an arm or wrist action that changes the state less than this failed.
TOLERANCE = dict(base_xz=math.hypot(0.01, 0.01), theta=1.5, lift=0.005, extension=0.005, yaw=2.0)

_ARM_DELTAS = {"yp": (ARM, 0), "ym": (-ARM, 0), "zp": (0, ARM), "zm": (0, -ARM),
               "yps": (ARM / 5, 0), "yms": (-ARM / 5, 0), "zps": (0, ARM / 5), "zms": (0, -ARM / 5)}  # fmt: skip
_ROTATIONS = {"r": ROTATE, "l": -ROTATE, "rs": ROTATE / 5, "ls": -ROTATE / 5}  # AI2-THOR: positive = right turn


class ThorSetupError(RuntimeError):
    """AI2-THOR cannot start here as configured; the message says what to do."""


class UnityLost(RuntimeError):
    """Unity timed out or crashed; the controller was restarted and the episode must be run again."""


class HouseError(RuntimeError):
    """AI2-THOR could not build this house (`CreateHouse` failed, e.g. an asset missing): draw another."""


def lost_unity(error: Exception) -> bool:
    """Whether an ai2thor error means the Unity process is gone (ai2thor 5.0.0 `controller.step`: a timeout, or
    any other server failure re-raised as RuntimeError after `server.stop()`; `RestartError` after a crash it
    restarted itself; a send on the stopped server: "write to closed file")."""
    text = str(error)
    return (
        isinstance(error, TimeoutError)
        or type(error).__name__ == "RestartError"
        or (isinstance(error, RuntimeError) and text.startswith("Error encountered when running action"))
        or (isinstance(error, ValueError) and "write to closed file" in text)
    )


@dataclass(frozen=True)
class ThorConfig:
    """Where the houses are and how AI2-THOR starts (FLaRe's build, CloudRendering on GPU machines)."""

    houses: str = ""  # directory with ProcTHOR-Objaverse houses_2023_07_28 train.jsonl.gz and val.jsonl.gz
    assets: str = ""  # objathor's 2023_07_28 directory (assets/ and annotations.json.gz): the houses' Objaverse objects
    platform: str = ""  # CloudRendering on headless GPU machines; empty: ai2thor's default (an X display)
    gpu_devices: str = ""  # comma-separated CUDA devices, env i renders on device i % count; empty: device 0
    commit: str = FLARE_THOR_COMMIT  # the AI2-THOR build to run (FLaRe's pinned one)
    controller: str = DEFAULT_CONTROLLER  # module:Class that drives AI2-THOR (tests pass a stand-in)
    max_steps: int = 500  # training episodes' step limit (FLaRe's RL: 500)
    eval_steps: int = 0  # evaluation episodes' step limit; 0: SPOC's (600, RoomVisit 1000)
    restarts: int = 3  # restarts after a Unity timeout before the error is raised


@dataclass(frozen=True)
class StretchPose:
    """The parts of FLaRe's `StretchState` that decide whether an action moved the robot."""

    x: float
    z: float
    theta: float
    lift: float
    extension: float
    yaw: float

    def moved(self, before: StretchPose) -> bool:
        """FLaRe's `sufficient_agent_state_change`: some change beyond `_universal_state_tolerance`."""
        dtheta = (self.theta - before.theta + 180) % 360 - 180
        return (
            math.hypot(self.x - before.x, self.z - before.z) > TOLERANCE["base_xz"]
            or abs(dtheta) > TOLERANCE["theta"]
            or abs(self.lift - before.lift) > TOLERANCE["lift"]
            or abs(self.extension - before.extension) > TOLERANCE["extension"]
            or abs(_wrist_travel(before.yaw, self.yaw)) > TOLERANCE["yaw"]
        )


def _wrist_travel(initial: float, final: float) -> float:
    """Signed wrist travel that never crosses the forbidden band (StretchState.signed_travel_distance_wrist)."""
    low, high = WRIST_BOUND_1, WRIST_BOUND_2 + 360
    initial, final = initial % 360, final % 360
    if low <= final <= high:
        final = low if abs(final - low) < abs(final - high) else high
    if final > initial:
        return final - initial - 360 if initial < low and final > high else final - initial
    return final - initial + 360 if initial > high and final < low else final - initial


def _check_package(commit: str) -> None:
    """FLaRe's build needs the ai2thor package made for it (its asset hooks, its actions): PyPI's 5.0.0 would
    start the build and then fail on the first Objaverse house."""
    try:
        version = importlib.metadata.version("ai2thor")
    except importlib.metadata.PackageNotFoundError:
        raise ThorSetupError(f"ai2thor is not installed; install FLaRe's build: {INSTALL_HINT}") from None
    if commit not in version:
        raise ThorSetupError(
            f"ai2thor {version} is installed but the build {commit} needs ai2thor==0+{commit} (its asset hooks and "
            f"actions); install it with: {INSTALL_HINT.replace(FLARE_THOR_COMMIT, commit)}"
        )


def load_class(path: str):
    """`module:Class` -> the class; a missing ai2thor gets the install command."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if module_name.startswith("ai2thor"):
            raise ThorSetupError(
                f"cannot import {module_name} ({error}); install FLaRe's build: {INSTALL_HINT}"
            ) from error
        raise ThorSetupError(f"cannot import {module_name!r} for --thor-controller {path}: {error}") from error
    try:
        return getattr(module, name or "Controller")
    except AttributeError as error:
        raise ThorSetupError(f"{module_name} has no class {name!r} (--thor-controller {path})") from error


class StretchController:
    """One AI2-THOR Stretch: start, house reset, the 20 actions, cameras, the state the tasks read."""

    def __init__(self, config: ThorConfig, gpu_index: int = 0, seed: int = 0) -> None:
        self.config = config
        self.gpu_index = gpu_index
        self.rng = np.random.default_rng(seed)
        self.house: dict | None = None
        self.controller = None
        self._per_house: dict = {}  # what stays true until the next house load: reachable positions, objects
        self.start()

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.controller == DEFAULT_CONTROLLER:
            _check_package(self.config.commit)
        controller_class = load_class(self.config.controller)
        kwargs = dict(STRETCH_ENV_ARGS, commit_id=self.config.commit, **self._platform_args(controller_class))
        kwargs.update(self._server_and_hooks())
        try:
            self.controller = controller_class(**kwargs)
        except TimeoutError:  # Unity started but did not answer in time: the caller retries
            raise
        except Exception as error:
            raise _setup_error(error, self.config) from error
        built = getattr(getattr(self.controller, "_build", None), "commit_id", "") or ""
        if self.config.commit not in built:
            self.controller.stop()
            raise ThorSetupError(
                f"AI2-THOR started build {built or 'unknown'} where {self.config.commit} was asked: the ai2thor "
                f"package installed does not match --thor-commit; install it with: {INSTALL_HINT}"
            )

    def _platform_args(self, controller_class) -> dict:
        """CloudRendering (`ai2thor.platform`, or the controller module's own, as a stand-in has) on GPU `i % n`."""
        if not self.config.platform:
            return {}
        if self.config.platform != "CloudRendering":
            raise ThorSetupError(f"--thor-platform {self.config.platform!r}: use CloudRendering, or leave it empty")
        platform = getattr(sys.modules[controller_class.__module__], "CloudRendering", None)
        if platform is None:
            platform = load_class("ai2thor.platform:CloudRendering")
        devices = [int(d) for d in self.config.gpu_devices.split(",") if d.strip()] or [0]
        return dict(platform=platform, gpu_device=devices[self.gpu_index % len(devices)])

    def _server_and_hooks(self) -> dict:
        """FLaRe's FIFO server, and the Objaverse asset hook where the installed ai2thor has one (the newer
        builds; ai2thor 5.0.0 on PyPI has no `ai2thor.hooks`)."""
        if self.config.controller != DEFAULT_CONTROLLER:
            return {}
        args = dict(server_class=importlib.import_module("ai2thor.fifo_server").FifoServer)
        try:
            hooks = importlib.import_module("ai2thor.hooks.procedural_asset_hook")
        except ImportError:
            return args
        assets = Path(self.config.assets) / "assets"
        if not self.config.assets or not assets.is_dir():
            raise ThorSetupError(
                f"the houses place Objaverse objects: --thor-assets must be objathor's 2023_07_28 directory holding "
                f"assets/ (got {self.config.assets!r}); download with: {ASSETS_HINT}"
            )
        runner = hooks.ProceduralAssetHookRunner(asset_directory=str(assets), asset_symlink=True, asset_limit=200)
        return dict(args, action_hook_runner=runner)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    # -- ai2thor calls -------------------------------------------------------------------------------
    @contextmanager
    def _restarting(self, doing: str):
        """A lost Unity inside the block becomes a restart (house loaded again) and `UnityLost`."""
        try:
            yield
        except Exception as error:
            if not lost_unity(error):
                raise
            self._restart_after(error)
            raise UnityLost(f"AI2-THOR lost {doing} ({error}); the controller was restarted") from error

    def step(self, action: str, **args):
        """`controller.step` as FLaRe's `StretchController.step` sends it (no image synthesis: no depth or
        segmentation wanted), with a lost Unity turned into a restart and `UnityLost`."""
        with self._restarting(f"on {action}"):
            return self.controller.step(action=action, renderImageSynthesis=False, **args)

    def _restart_after(self, error: Exception) -> None:
        """A fresh Unity process with the current house loaded; each attempt that times out again is retried."""
        for _ in range(self.config.restarts):
            try:
                self.controller.stop()
            except Exception:  # the process that timed out may be gone already
                pass
            try:
                self.start()
                if self.house is not None:
                    self._load(self.house)
                return
            except Exception as again:
                if not lost_unity(again):
                    raise
                continue
        raise ThorSetupError(
            f"AI2-THOR timed out and did not come back after {self.config.restarts} restarts ({error}); check the "
            "GPU (nvidia-smi), free memory and the X display or CloudRendering"
        ) from error

    def reset(self, house: dict) -> None:
        """FLaRe's `StretchController.reset`: nav meshes and horizon written into the house, reset, calibration."""
        self.house = house
        with self._restarting("loading a house"):
            self._load(house)

    def _load(self, house: dict) -> None:
        self._per_house.clear()
        scene = copy.deepcopy(house)
        scene["metadata"]["navMeshes"] = [dict(NAV_MESH, id=i, agentRadius=r) for i, r in enumerate(NAV_MESH_RADII)]
        scene["metadata"].setdefault(
            "agent",
            {"horizon": 30, "position": {"x": 0, "y": 0.95, "z": 0}, "rotation": {"x": 0, "y": 270, "z": 0},
             "standing": True},
        )  # fmt: skip
        scene["metadata"]["agent"]["horizon"] = 0
        event = self.controller.reset(scene=scene)
        if not event.metadata["lastActionSuccess"]:  # CreateHouse is not raise_for_failure in ai2thor's reset
            self.house = None
            raise HouseError(f"AI2-THOR could not build the house: {event.metadata['errorMessage']}")
        self.calibrate()
        self.controller.step("ToggleMagnetVisibility", visible=False, raise_for_failure=True)
        self.controller.step("SetObjectFilter", objectIds=[])

    def calibrate(self) -> None:
        """FLaRe's `calibrate_agent`: camera mounts and fields of view jittered as on the real robots."""
        mount = np.arange(-2, 2, 0.2)  # FLaRe draws from np.arange: -2 .. 1.8
        fov = np.arange(-1, 1, 0.1)

        def step(action: str, **args):
            return self.controller.step(action=action, raise_for_failure=True, **args)

        step("RotateCameraMount", degrees=27 + float(self.rng.choice(mount)), secondary=False)
        step("RotateCameraMount", degrees=33 + float(self.rng.choice(mount)), secondary=True)
        step("ChangeFOV", fieldOfView=59 + float(self.rng.choice(fov)), camera="FirstPersonCharacter")
        step("ChangeFOV", fieldOfView=59 + float(self.rng.choice(fov)), camera="SecondaryCamera")
        step("SetGripperOpenness", openness=30)

    def teleport(self, position: dict, yaw: float):
        """FLaRe's `teleport_agent`: position plus a yaw-only rotation."""
        return self.step("Teleport", position=position, rotation=dict(x=0, y=yaw, z=0))

    # -- the 20 actions ------------------------------------------------------------------------------
    def action_call(self, name: str) -> dict:
        """The ai2thor action FLaRe's `agent_step` sends for a policy action (`use_quick_navi_action=True`)."""
        if name in ("m", "b"):
            return dict(action="MoveAheadQuick" if name == "m" else "MoveBackQuick", moveMagnitude=MOVE)
        if name in _ROTATIONS:
            return dict(action="RotateRightQuick", degrees=_ROTATIONS[name])
        if name in _ARM_DELTAS:
            dy, dz = _ARM_DELTAS[name]
            x, y, z = self.arm_target()
            return dict(action="MoveArm", position=dict(x=x, y=y + dy, z=z + dz), **ARM_ARGS)
        if name in ("wp", "wm"):
            w = self.wrist_angle()
            yaw = -min(WRIST, abs(w - (WRIST_BOUND_2 + 360))) if name == "wp" else min(WRIST, abs(WRIST_BOUND_1 - w))
            return dict(action="RotateWristRelative", yaw=yaw, **ARM_ARGS)
        if name == "p":
            return dict(action="PickupObject")
        if name == "d":
            return dict(action="ReleaseObject")
        raise ValueError(f"action {name!r} is not sent to AI2-THOR (end and sub_done belong to the task)")

    def agent_step(self, index: int):
        """Send one policy action; `lastActionSuccess` is FLaRe's verdict (pickup never counts, a drop always,
        arm and wrist only when no collision and the state changed, navigation when no collision)."""
        name = action_by_index(index).name
        call = self.action_call(name)
        before = self.pose()
        event = self.step(**call)
        if name == "d":
            self.step("AdvancePhysicsStep", simSeconds=2)
        collided = "collided" in (event.metadata.get("errorMessage") or "").lower()
        if name == "p":
            success = False
        elif name == "d":
            success = True
        elif call["action"] in ("MoveArm", "RotateWristRelative"):
            success = not collided and self.pose().moved(before)
        else:
            success = not collided
        event.metadata["lastActionSuccess"] = success
        return event

    # -- state ---------------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return self.controller.last_event.metadata

    def arm_target(self) -> tuple[float, float, float]:
        """FLaRe's `get_relative_stretch_current_arm_state`: the arm root-relative target MoveArm takes."""
        joints = self.metadata["arm"]["joints"]
        x = joints[-1]["rootRelativePosition"]["x"]
        if abs(x) > 1e-3:
            raise RuntimeError(f"the Stretch wrist is off its axis (root-relative x {x:.4f}); the arm state is invalid")
        return x, joints[0]["rootRelativePosition"]["y"] - LIFT_OFFSET, joints[-1]["rootRelativePosition"]["z"]

    def wrist_angle(self) -> float:
        """FLaRe's `get_arm_wrist_rotation`, degrees."""
        rotation = self.metadata["arm"]["joints"][-1]["rootRelativeRotation"]
        return math.fmod(rotation["w"] * rotation["y"], 360)

    def pose(self) -> StretchPose:
        agent = self.metadata["agent"]
        _, lift, extension = self.arm_target()
        return StretchPose(agent["position"]["x"], agent["position"]["z"], agent["rotation"]["y"], lift, extension,
                           self.wrist_angle())  # fmt: skip

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        """Navigation and manipulation frames, 224 x 384 RGB: FLaRe's 6 px cut from each side."""
        event = self.controller.last_event
        if event.frame is None or not event.third_party_camera_frames:
            raise RuntimeError("AI2-THOR returned no camera frames: is the Stretch's SecondaryCamera rendered?")
        cut = round(event.frame.shape[1] * CROP_SIDE / STRETCH_ENV_ARGS["width"])
        nav = event.frame[:, cut:-cut, :3]
        manip = event.third_party_camera_frames[0][:, cut:-cut, :3]
        return np.ascontiguousarray(nav), np.ascontiguousarray(manip)

    def visible_objects(self, max_distance: float = 2.0) -> list[str]:
        """Object ids the navigation camera sees within `max_distance` m (ObjectNav's success test)."""
        return list(self.step("GetVisibleObjects", maxDistance=max_distance).metadata["actionReturn"] or [])

    def held_objects(self) -> list[str]:
        return list(self.metadata["arm"]["heldObjects"] or [])

    def agent_position(self) -> dict:
        return dict(self.metadata["agent"]["position"])

    def reachable_positions(self) -> list[dict]:
        """FLaRe's `get_reachable_positions` (grid 0.75 x the move step); empty where the call fails. Asked once
        per house load (episodes that keep a house keep its objects where they were)."""
        if "positions" not in self._per_house:
            event = self.step("GetReachablePositions", gridSize=MOVE * 0.75)
            ok = event.metadata["lastActionSuccess"]
            self._per_house["positions"] = list(event.metadata["actionReturn"] or []) if ok else []
        return self._per_house["positions"]

    def objects(self) -> list[dict]:
        """Every object's metadata, the object filter lifted for the read as SPOC's
        `include_object_metadata_context` does; read once per house load (the tasks take ids and types)."""
        if "objects" not in self._per_house:
            self.step("ResetObjectFilter")
            self._per_house["objects"] = list(self.metadata["objects"])
            self.step("SetObjectFilter", objectIds=[])
        return self._per_house["objects"]

    def shortest_path(self, object_id: str) -> list[dict] | None:
        """Corners of the shortest path to an object, trying the widest nav mesh first (FLaRe's
        `get_shortest_path_to_object` without its skeleton smoothing); None where no mesh has one."""
        for mesh in range(len(NAV_MESH_RADII)):
            event = self.step("GetShortestPath", objectId=object_id, position=self.agent_position(), navMeshId=mesh)
            if event.metadata["lastActionSuccess"] and event.metadata["actionReturn"]["corners"]:
                return list(event.metadata["actionReturn"]["corners"])
        return None


def _setup_error(error: Exception, config: ThorConfig) -> ThorSetupError:
    """What a user does about AI2-THOR failing to start (Vulkan/GPU, display, build download)."""
    text = f"{type(error).__name__}: " + " ".join(str(error).split())  # one line
    lowered = text.lower()
    if "vulkan" in lowered or "cloudrendering" in lowered or "gpu" in lowered:
        hint = ("CloudRendering needs an NVIDIA GPU with Vulkan: install the NVIDIA driver and libvulkan1 (the "
                "retraining image has both) and run the container with --gpus all")  # fmt: skip
    elif "display" in lowered or "xserver" in lowered or "x server" in lowered:
        hint = "no X display: on a headless GPU machine pass --thor-platform CloudRendering"
    elif "commit" in lowered or "build" in lowered or "404" in lowered:
        hint = f"the build for commit {config.commit} cannot be fetched; install FLaRe's ai2thor: {INSTALL_HINT}"
    else:
        hint = "see the ai2thor error above"
    return ThorSetupError(f"AI2-THOR did not start ({text}); {hint}")
