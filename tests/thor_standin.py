"""A stand-in for AI2-THOR's `ai2thor.controller.Controller` in `agentMode="stretch"`, for tests only.

AI2-THOR's Unity build downloads at run time and needs a GPU or an X display, so it cannot run here. This class
answers to the same Python API, read from ai2thor 5.0.0's `ai2thor/controller.py` and `ai2thor/fifo_server.py`:

- the constructor takes ai2thor's keyword arguments (`commit_id`, `platform`, `gpu_device`, `server_class`,
  `server_timeout`, ...; anything else is an Initialize parameter) and fails as ai2thor does: `ValueError("Invalid
  commit_id: ...")` for a build that does not exist, the platform-validation `Exception` when Vulkan is missing;
- `reset(scene=house_dict)` loads a ProcTHOR house (Reset, Initialize, CreateHouse);
- `step(action, **args)` (or `step(dict)`) pops `raise_for_failure`; a failed action whose errorCode is
  InvalidAction, MissingArguments, AmbiguousAction or InvalidArgument raises ValueError(errorMessage), any other
  failure raises RuntimeError only with `raise_for_failure`; a server timeout stops the server and raises
  `TimeoutError("Error encountered when running action ...")`, after which a send raises
  `ValueError("write to closed file")`;
- it returns real `ai2thor.server.Event` objects, built from the metadata fields SPOC and FLaRe read, with frames
  added through `Event.add_image` / `add_third_party_camera_image` from vertically flipped RGBA buffers, as the
  FIFO server delivers them under CloudRendering.

The world is small and says so: the house's rooms (floor polygons, walls between rooms left open), its objects as
points (type from `objectType`, else the id's prefix), an agent with a base pose, a lift, an arm extension, a
wrist and a magnet; visibility is distance plus field of view (no occlusion); frames are flat colours (room
floor, one column per visible object). The manipulation camera and the arm point 90 degrees right of the
heading here. Tests inject faults through the module's `FAULTS`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from ai2thor.server import Event

WIDTH, HEIGHT = 396, 224
HFOV = 2 * math.degrees(math.atan(math.tan(math.radians(59 / 2)) * WIDTH / HEIGHT))  # ~90 deg from a 59 deg vfov
LIFT_OFFSET = 0.16297650337219238
LIFT_RANGE, EXTENSION_RANGE, WRIST_RANGE = (0.0, 1.0457), (0.0, 0.516), (100.0, 435.0)  # wrist unwrapped, degrees
MAGNET_RADIUS = 0.3
PICKUPABLE = {"AlarmClock", "Apple", "BasketBall", "Bowl", "Laptop", "Mug", "SprayBottle", "Vase", "Book", "Pencil"}
THOR_TYPES = {"AlarmClock", "Apple", "BasketBall", "Bed", "Bowl", "Chair", "GarbageCan", "HousePlant", "Laptop",
              "Mug", "Sofa", "SprayBottle", "Television", "Toilet", "Vase", "Book", "Pencil"}  # fmt: skip
ERROR_CODES_THAT_RAISE = ("InvalidAction", "MissingArguments", "AmbiguousAction", "InvalidArgument")
KNOWN_BUILDS = {"966bd7758586e05d18f6181f459c0e90ba318bec", "5e43486351ac6339c399c199e601c9dd18daecc3"}


@dataclass
class Faults:
    """What the next controllers do wrong: time out on an action, miss Vulkan, report another build."""

    timeout_on: deque = field(default_factory=deque)  # action names; each entry times out once
    crash_on: deque = field(default_factory=deque)  # action names; Unity dies on each once
    bad_houses: int = 0  # the next CreateHouse calls that fail (an asset missing)
    vulkan: bool = True
    build_commit: str = ""  # non-empty: `_build.commit_id` reports this whatever was asked
    started: int = 0  # controllers constructed (restarts included)

    def clear(self) -> None:
        self.__init__()


FAULTS = Faults()


class CloudRendering:
    """Stands for `ai2thor.platform.CloudRendering` (the class is passed as `platform=`)."""


class Build:
    def __init__(self, commit_id: str) -> None:
        self.commit_id = commit_id


class Controller:
    """`ai2thor.controller.Controller`'s interface over a small deterministic Stretch world (see the module)."""

    def __init__(self, quality="Ultra", fullscreen=False, headless=False, port=0, start_unity=True,
                 local_executable_path=None, local_build=False, commit_id=None, branch=None, width=300, height=300,
                 x_display=None, host="127.0.0.1", scene=None, image_dir=".", save_image_per_frame=False,
                 depth_format=None, add_depth_noise=False, download_only=False, include_private_scenes=False,
                 server_class=None, gpu_device=None, platform=None, server_timeout=100.0,
                 server_start_timeout=300.0, **unity_initialization_parameters):  # fmt: skip
        if gpu_device is not None and (not isinstance(gpu_device, int) or gpu_device < 0):
            raise ValueError(f"Invalid gpu_device: '{gpu_device}'. gpu_device must be >= 0")
        platform_name = getattr(platform, "__name__", None) or "Linux64"
        if commit_id not in KNOWN_BUILDS:
            raise ValueError(
                f"Invalid commit_id: {commit_id} - no build exists for arch=Linux platforms={platform_name}"
            )
        if platform_name == "CloudRendering" and not FAULTS.vulkan:
            raise Exception(
                "The following builds were found, but had missing dependencies. Only one valid platform is required "
                "to run AI2-THOR.\nPlatform CloudRendering failed validation with the following errors: Vulkan API "
                "driver missing.\n  CloudRendering requires libvulkan1. Please install by running: sudo apt-get -y "
                "install libvulkan1"
            )
        FAULTS.started += 1
        self._build = Build(FAULTS.build_commit or commit_id)
        self.width, self.height = width, height
        self.gpu_device = gpu_device
        self.initialization_parameters = dict(unity_initialization_parameters)
        self.sent: list[dict] = []
        self.server_alive = True
        self.scene = None
        self.world: World | None = None
        self.last_event = self._event(dict(action="Initialize"), True, "", None)

    # -- ai2thor's API -------------------------------------------------------------------------------
    def reset(self, scene=None, **init_params):
        if not isinstance(scene, dict):
            raise ValueError(f"Scene '{scene}' not contained in build")  # the stand-in only has procedural houses
        self._send("Reset")
        if FAULTS.timeout_on and FAULTS.timeout_on[0] == "Reset":  # the procedural Reset is received directly:
            FAULTS.timeout_on.popleft()  # the raw FIFO timeout, server left running
            raise TimeoutError("Reading from AI2-THOR backend timed out (using 1200s) timeout.")
        self.initialization_parameters.update(init_params)
        self.world = World(scene)
        self.last_event = self.step(action="Initialize", raise_for_failure=True, **self.initialization_parameters)
        self.last_event = self.step(action="CreateHouse", house=scene)
        self.scene = scene
        return self.last_event

    def step(self, action=None, **action_args):
        action = dict(action) if isinstance(action, dict) else dict(action=action)
        raise_for_failure = action_args.pop("raise_for_failure", False)
        action.update(action_args)
        self.sent.append(dict(action))  # what reached "Unity", for tests to compare with upstream's calls
        self._send(action["action"])
        if FAULTS.timeout_on and FAULTS.timeout_on[0] == action["action"]:
            FAULTS.timeout_on.popleft()
            self.server_alive = False  # ai2thor stops the server (kills Unity) before raising
            raise TimeoutError(f"Error encountered when running action {action} in scene Procedural.")
        if FAULTS.crash_on and FAULTS.crash_on[0] == action["action"]:
            FAULTS.crash_on.popleft()
            self.server_alive = False  # any other server failure: ai2thor stops it and raises RuntimeError
            raise RuntimeError(f"Error encountered when running action {action} in scene Procedural.")
        success, message, code, value = self._run(action)
        self.last_event = self._event(action, success, message, value, code)
        if not success and code in ERROR_CODES_THAT_RAISE:
            raise ValueError(message)
        if not success and raise_for_failure:
            raise RuntimeError(message or f"{action} failed")
        return self.last_event

    def stop(self) -> None:
        self.server_alive = False

    # -- internals -----------------------------------------------------------------------------------
    def _send(self, name: str) -> None:
        if not self.server_alive:
            raise ValueError("write to closed file")

    def _run(self, action: dict) -> tuple[bool, str, str, object]:
        name = action["action"]
        if name == "CreateHouse" and FAULTS.bad_houses:
            FAULTS.bad_houses -= 1
            return False, "Asset 'missing-asset' could not be found in the procedural cache", "", None
        if name in ("Initialize", "Pass", "RandomizeMaterials", "ResetMaterials", "DisableSecondaryCamera",
                    "CreateHouse"):  # fmt: skip
            return True, "", "", None
        if self.world is None:
            return False, f"{name}: no scene loaded; call reset(scene=...) first", "InvalidAction", None
        handler = getattr(self.world, name, None)
        if handler is None or name.startswith("_") or not name[0].isupper():
            return False, f"Invalid action: {name}", "InvalidAction", None
        args = {k: v for k, v in action.items() if k not in ("action", "renderImageSynthesis", "renderImage")}
        try:
            return handler(**args)
        except TypeError as error:  # a missing or unknown argument, as Unity's argument binding reports it
            code = "MissingArguments" if "missing" in str(error) else "InvalidArgument"
            return False, f"{name}: {error}", code, None

    def _event(self, action: dict, success: bool, message: str, value, code: str = "") -> Event:
        world = self.world
        metadata = {
            "lastAction": action.get("action"), "lastActionSuccess": success, "errorMessage": message,
            "errorCode": code, "actionReturn": value, "sceneName": "Procedural",
            "screenWidth": self.width, "screenHeight": self.height,
            "sceneBounds": world.bounds() if world else {}, "objects": world.object_metadata() if world else [],
            "agent": world.agent_metadata() if world else {}, "arm": world.arm_metadata() if world else {},
            "thirdPartyCameras": [{"thirdPartyCameraId": 0, "fieldOfView": world.fov[1] if world else 59}],
        }  # fmt: skip
        event = Event(metadata)
        if world is not None:
            event.add_image(_unity_buffer(world.render(0.0, self.height, self.width)))
            event.add_third_party_camera_image(_unity_buffer(world.render(90.0, self.height, self.width)))
        return event


def _unity_buffer(rgb: np.ndarray) -> bytes:
    """RGB -> the bytes the FIFO server delivers: RGBA, bottom row first (read_buffer_image flips it back)."""
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    return np.ascontiguousarray(rgba[::-1]).tobytes()


def _inside(point: tuple[float, float], polygon: list[tuple[float, float]]) -> bool:
    x, z = point
    inside = False
    for (x1, z1), (x2, z2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (z1 > z) != (z2 > z) and x < x1 + (z - z1) * (x2 - x1) / (z2 - z1):
            inside = not inside
    return inside


def _objects(entries: list[dict]) -> list[dict]:
    out = []
    for entry in entries:
        out.append(entry)
        out.extend(_objects(entry.get("children", [])))
    return out


class World:
    """One house: rooms, point objects, the Stretch. Action methods return (success, message, code, return)."""

    def __init__(self, house: dict) -> None:
        self.rooms = [(r["id"], [(p["x"], p["z"]) for p in r["floorPolygon"]]) for r in house["rooms"]]
        self.objects = {}
        for o in _objects(house["objects"]):
            prefix = o["id"].split("|")[0]
            kind = o.get("objectType") or (prefix if prefix in THOR_TYPES else "Undefined")  # Objaverse: Undefined
            pos = o["position"]
            self.objects[o["id"]] = {"type": kind, "asset": o.get("assetId", ""), "x": pos["x"], "y": pos["y"],
                                     "z": pos["z"], "pickupable": o.get("pickupable", kind in PICKUPABLE)}  # fmt: skip
        agent = house["metadata"].get("agent", {})
        self.x, self.z = agent.get("position", {}).get("x", 0.0), agent.get("position", {}).get("z", 0.0)
        self.yaw = float(agent.get("rotation", {}).get("y", 0.0))
        self.lift, self.extension, self.wrist = 0.5, 0.0, 180.0
        self.held: list[str] = []
        self.fov = [59.0, 59.0]
        self.filtered = False
        self.nav_meshes = house["metadata"].get("navMeshes", [])

    # -- geometry ------------------------------------------------------------------------------------
    def free(self, x: float, z: float, margin: float = 0.15) -> bool:
        return all(
            any(_inside((x + dx, z + dz), poly) for _, poly in self.rooms)
            for dx, dz in ((0, 0), (margin, 0), (-margin, 0), (0, margin), (0, -margin))
        )

    def heading(self, offset: float = 0.0) -> tuple[float, float]:
        a = math.radians(self.yaw + offset)  # AI2-THOR: yaw 0 faces +z, 90 faces +x (left-handed, y up)
        return math.sin(a), math.cos(a)

    def hand(self) -> dict:
        dx, dz = self.heading(90.0)
        reach = 0.2 + self.extension
        return {"x": self.x + dx * reach, "y": self.lift + 0.1, "z": self.z + dz * reach}

    def seen(self, offset: float, max_distance: float) -> list[tuple[str, float, float]]:
        """(id, distance, bearing) of the objects in a camera's field of view within max_distance."""
        out = []
        for oid, o in self.objects.items():
            if oid in self.held:
                continue
            dist = math.hypot(o["x"] - self.x, o["z"] - self.z)
            bearing = math.degrees(math.atan2(o["x"] - self.x, o["z"] - self.z)) - (self.yaw + offset)
            bearing = (bearing + 180) % 360 - 180
            if dist <= max_distance and abs(bearing) <= HFOV / 2:
                out.append((oid, dist, bearing))
        return out

    def bounds(self) -> dict:
        xs = [x for _, poly in self.rooms for x, _ in poly]
        zs = [z for _, poly in self.rooms for _, z in poly]
        return {"center": {"x": (min(xs) + max(xs)) / 2, "y": 1.5, "z": (min(zs) + max(zs)) / 2},
                "size": {"x": max(xs) - min(xs), "y": 3.0, "z": max(zs) - min(zs)}}  # fmt: skip

    def render(self, offset: float, height: int, width: int) -> np.ndarray:
        room = next((i for i, (_, poly) in enumerate(self.rooms) if _inside((self.x, self.z), poly)), 0)
        frame = np.empty((height, width, 3), np.uint8)
        frame[: height // 2] = (200, 200, 190)
        frame[height // 2 :] = (60 + 40 * (room % 4), 90, 120 - 20 * (room % 4))
        for oid, dist, bearing in sorted(self.seen(offset, 6.0), key=lambda s: -s[1]):
            centre = int((bearing / HFOV + 0.5) * (width - 1))
            half = max(2, int(40 / max(dist, 0.2)))
            colour = np.frombuffer(self.objects[oid]["type"].encode().ljust(3, b"x")[:3], np.uint8) | 0x40
            frame[height // 4 : height - height // 8, max(0, centre - half) : centre + half] = colour
        return frame

    # -- metadata ------------------------------------------------------------------------------------
    def agent_metadata(self) -> dict:
        position = {"x": self.x, "y": 0.9009982347488403, "z": self.z}
        rotation = {"x": 0.0, "y": self.yaw % 360, "z": 0.0}
        return {"position": position, "rotation": rotation, "cameraHorizon": 0.0, "isStanding": True}

    def arm_metadata(self) -> dict:
        hand = self.hand()
        wrist = {"x": 0.0, "y": 1.0, "z": 0.0, "w": self.wrist % 360}
        joints = [
            {"name": "stretch_robot_lift_jnt", "position": hand,
             "rootRelativePosition": {"x": 0.0, "y": self.lift + LIFT_OFFSET, "z": 0.0},
             "rootRelativeRotation": {"x": 0.0, "y": 1.0, "z": 0.0, "w": 0.0}},
            {"name": "stretch_robot_arm_1_jnt", "position": hand,
             "rootRelativePosition": {"x": 0.0, "y": self.lift, "z": self.extension / 2},
             "rootRelativeRotation": {"x": 0.0, "y": 1.0, "z": 0.0, "w": 0.0}},
            {"name": "stretch_robot_wrist_1_jnt", "position": hand,
             "rootRelativePosition": {"x": 0.0, "y": self.lift, "z": self.extension},
             "rootRelativeRotation": {"x": 0.0, "y": 1.0, "z": 0.0, "w": 0.0}},
            {"name": "stretch_robot_wrist_2_jnt", "position": hand,
             "rootRelativePosition": {"x": 0.0, "y": self.lift, "z": self.extension}, "rootRelativeRotation": wrist},
        ]  # fmt: skip
        return {"joints": joints, "heldObjects": list(self.held), "pickupableObjects": self.in_magnet(),
                "handSphereCenter": hand, "handSphereRadius": MAGNET_RADIUS}  # fmt: skip

    def object_metadata(self) -> list[dict]:
        return [] if self.filtered else [self._describe(oid) for oid in self.objects]

    def _describe(self, oid: str) -> dict:
        o = self.objects[oid]
        position = {"x": o["x"], "y": o["y"], "z": o["z"]}
        return {"objectId": oid, "objectType": o["type"], "assetId": o["asset"], "pickupable": o["pickupable"],
                "isPickedUp": oid in self.held, "position": position, "parentReceptacles": None,
                "axisAlignedBoundingBox": {"center": position, "size": {"x": 0.2, "y": 0.2, "z": 0.2}}}  # fmt: skip

    def in_magnet(self) -> list[str]:
        hand = self.hand()
        return [
            oid for oid, o in self.objects.items()
            if o["pickupable"] and oid not in self.held
            and math.dist((o["x"], o["y"], o["z"]), (hand["x"], hand["y"], hand["z"])) <= MAGNET_RADIUS
        ]  # fmt: skip

    # -- actions (names and arguments as AI2-THOR's; each returns success, message, code, return) ----------
    def RotateCameraMount(self, degrees: float, secondary: bool = False):
        return True, "", "", None

    def ChangeFOV(self, fieldOfView: float, camera: str = "FirstPersonCharacter"):
        if camera not in ("FirstPersonCharacter", "SecondaryCamera"):
            return False, f"no camera named {camera}", "InvalidArgument", None
        self.fov[camera == "SecondaryCamera"] = float(fieldOfView)
        return True, "", "", None

    def SetGripperOpenness(self, openness: float):
        return True, "", "", None

    def ToggleMagnetVisibility(self, visible: bool = True):
        return True, "", "", None

    def SetObjectFilter(self, objectIds: list):
        self.filtered = True
        return True, "", "", None

    def ResetObjectFilter(self):
        self.filtered = False
        return True, "", "", None

    def AdvancePhysicsStep(self, simSeconds: float = 0.02):
        return True, "", "", None

    def Teleport(self, position: dict, rotation: dict | None = None, horizon: float | None = None,
                 standing: bool | None = None, forceAction: bool = False):  # fmt: skip
        if not forceAction and not self.free(position["x"], position["z"]):
            return False, f"Teleport target {position} is not a valid position", "", None
        self.x, self.z = position["x"], position["z"]
        if rotation is not None:
            self.yaw = float(rotation["y"] if isinstance(rotation, dict) else rotation)
        return True, "", "", None

    def GetReachablePositions(self, gridSize: float = 0.25):
        b = self.bounds()
        xs = np.arange(b["center"]["x"] - b["size"]["x"] / 2, b["center"]["x"] + b["size"]["x"] / 2, gridSize)
        zs = np.arange(b["center"]["z"] - b["size"]["z"] / 2, b["center"]["z"] + b["size"]["z"] / 2, gridSize)
        points = [{"x": round(float(x), 4), "y": 0.9009982347488403, "z": round(float(z), 4)}
                  for x in xs for z in zs if self.free(float(x), float(z))]  # fmt: skip
        return True, "", "", points

    def _move(self, distance: float):
        dx, dz = self.heading()
        x, z = self.x + dx * distance, self.z + dz * distance
        if not self.free(x, z):
            return False, "Stretch collided with a wall", "", None
        self.x, self.z = x, z
        return True, "", "", None

    def MoveAheadQuick(self, moveMagnitude: float):
        return self._move(moveMagnitude)

    def MoveBackQuick(self, moveMagnitude: float):
        return self._move(-moveMagnitude)

    def MoveAgent(self, ahead: float = 0.0, right: float = 0.0, returnToStart: bool = True, speed: float = 1):
        return self._move(ahead)

    def RotateRightQuick(self, degrees: float):
        self.yaw = (self.yaw + degrees) % 360
        return True, "", "", None

    def RotateAgent(self, degrees: float, returnToStart: bool = True, speed: float = 1):
        return self.RotateRightQuick(degrees)

    def MoveArm(self, position: dict, returnToStart: bool = True, speed: float = 1, coordinateSpace: str = "armBase",
                restrictMovement: bool = False, disableRendering: bool = True):  # fmt: skip
        if abs(position["x"]) > 1e-3:
            return False, "the Stretch arm cannot move sideways", "", None
        self.lift = float(np.clip(position["y"], *LIFT_RANGE))
        self.extension = float(np.clip(position["z"], *EXTENSION_RANGE))
        return True, "", "", None

    def RotateWristRelative(self, yaw: float, returnToStart: bool = True, speed: float = 1):
        self.wrist = float(np.clip(self.wrist + yaw, *WRIST_RANGE))
        return True, "", "", None

    def PickupObject(self, objectIdCandidates: list | None = None):
        candidates = self.in_magnet()
        if not candidates:
            return False, "No objects in the magnet sphere to pick up", "", None
        self.held.append(candidates[0])
        return True, "", "", None

    def ReleaseObject(self):
        hand = self.hand()
        for oid in self.held:
            self.objects[oid].update(x=hand["x"], y=0.05, z=hand["z"])
        self.held = []
        return True, "", "", None

    def GetVisibleObjects(self, maxDistance: float = 1.5, thirdPartyCameraIndex: int | None = None,
                          objectIds: list | None = None):  # fmt: skip
        seen = [oid for oid, _, _ in self.seen(0.0 if thirdPartyCameraIndex is None else 90.0, maxDistance)]
        return True, "", "", [o for o in seen if objectIds is None or o in objectIds]

    def GetObjectMetadata(self, objectIds: list):
        missing = [o for o in objectIds if o not in self.objects]
        if missing:
            return False, f"objects not found: {missing}", "InvalidArgument", None
        return True, "", "", [self._describe(o) for o in objectIds]

    def GetShortestPath(self, objectId: str, position: dict, navMeshId: int = 0, rotation: dict | None = None,
                        allowedError: float = 0.0001):  # fmt: skip
        if objectId not in self.objects:
            return False, f"Cannot find object with id {objectId}", "InvalidArgument", None
        if not 0 <= navMeshId < max(1, len(self.nav_meshes)):
            return False, f"Invalid navMeshId {navMeshId}", "InvalidArgument", None
        radius = self.nav_meshes[navMeshId]["agentRadius"] if self.nav_meshes else 0.2
        o = self.objects[objectId]
        corners = self._path((position["x"], position["z"]), (o["x"], o["z"]), min(radius, 0.3))
        if corners is None:
            return False, f"Path to {objectId} could not be found", "", {"corners": []}
        return True, "", "", {"corners": corners}

    def _path(self, start, goal, margin: float, step: float = 0.15) -> list[dict] | None:
        """Breadth-first search on a 0.15 m grid to a free cell within 1 m of the goal; cells as corners."""
        origin = np.array(start)
        moves = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
        parents, queue = {(0, 0): None}, deque([(0, 0)])
        while queue:
            cell = queue.popleft()
            point = origin + step * np.array(cell)
            if math.dist(point, goal) <= 1.0:
                path = []
                while cell is not None:
                    p = origin + step * np.array(cell)
                    path.append({"x": float(p[0]), "y": 0.9009982347488403, "z": float(p[1])})
                    cell = parents[cell]
                return path[::-1]
            for i, j in moves:
                nxt = (cell[0] + i, cell[1] + j)
                if nxt not in parents and abs(nxt[0]) < 200 and abs(nxt[1]) < 200:
                    q = origin + step * np.array(nxt)
                    if self.free(float(q[0]), float(q[1]), margin):
                        parents[nxt] = cell
                        queue.append(nxt)
        return None


def make_house(rng: np.random.Generator, rooms: int = 3, objects: int = 8) -> dict:
    """A ProcTHOR-format house (rooms with floor polygons, objects with id/assetId/position/rotation/children,
    metadata.agent): rooms of 3 x 3 m side by side along x, objects of SPOC's target types in them."""
    types = ["AlarmClock", "Apple", "BasketBall", "Bed", "Bowl", "Chair", "GarbageCan", "HousePlant", "Laptop", "Mug",
             "Sofa", "SprayBottle", "Television", "Toilet", "Vase"]  # fmt: skip
    house_rooms = [
        {"id": f"room|{i}", "roomType": ("Kitchen", "LivingRoom", "Bedroom", "Bathroom")[i % 4], "children": [],
         "floorPolygon": [{"x": 3.0 * i, "y": 0, "z": 0.0}, {"x": 3.0 * i, "y": 0, "z": 3.0},
                          {"x": 3.0 * i + 3, "y": 0, "z": 3.0}, {"x": 3.0 * i + 3, "y": 0, "z": 0.0}]}
        for i in range(rooms)
    ]  # fmt: skip
    house_objects = []
    for k in range(objects):
        kind = types[int(rng.integers(len(types)))]
        room = int(rng.integers(rooms))
        position = {"x": 3.0 * room + float(rng.uniform(0.4, 2.6)), "y": float(rng.uniform(0.05, 0.9)),
                    "z": float(rng.uniform(0.4, 2.6))}  # fmt: skip
        house_objects.append({"id": f"{kind}|{room}|{k}", "assetId": f"{kind}_{k % 3 + 1}", "position": position,
                              "rotation": {"x": 0, "y": 0, "z": 0}, "kinematic": False, "children": []})  # fmt: skip
    agent = {"horizon": 30, "position": {"x": 1.5, "y": 0.95, "z": 1.5}, "rotation": {"x": 0, "y": 90, "z": 0},
             "standing": True}  # fmt: skip
    return {"id": "standin", "rooms": house_rooms, "walls": [], "doors": [], "windows": [], "objects": house_objects,
            "metadata": {"agent": agent, "schema": "1.0.0"}}  # fmt: skip


def write_houses(directory, train: int = 6, val: int = 4, seed: int = 0):
    """`DIR/houses_2023_07_28/{train,val}.jsonl.gz`, as SPOC's download script lays them out."""
    import gzip
    import json
    from pathlib import Path

    rng = np.random.default_rng(seed)
    folder = Path(directory) / "houses_2023_07_28"
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        with gzip.open(folder / f"{split}.jsonl.gz", "wt") as f:
            for _ in range(count):
                f.write(json.dumps(make_house(rng, rooms=int(rng.integers(2, 4)))) + "\n")
    return Path(directory)
