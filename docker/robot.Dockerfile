# The robot graph on ROS 2 Jazzy (what `ros2 launch flare_bringup <robot>.launch.py` runs), no torch.
#   docker build -f docker/robot.Dockerfile -t flare-robot .
#   docker run --rm -it --net=host --ipc=host flare-robot                        # simulated Stretch
#   docker run --rm -it --net=host --ipc=host --privileged -v /dev:/dev flare-robot \
#       ros2 launch flare_bringup stretch.launch.py robot:=real backend:=stretch_driver
# The stretch_body backend needs the robot's fleet directory mounted (HELLO_FLEET_PATH) and
# `pip install hello-robot-stretch-body`; the interbotix backend needs Interbotix's ROS 2 workspace.
# --ipc=host: the graph passes camera frames through shared memory (flare_bringup/fastdds_frames.xml), which
# a container's default 64 MB /dev/shm cannot hold.
FROM ros:jazzy-ros-base-noble

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-colcon-common-extensions ros-jazzy-launch-ros \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /flare
COPY requirements-robot.txt ./
RUN pip3 install --no-cache-dir --break-system-packages -r requirements-robot.txt

COPY src ./src
COPY launch ./launch
COPY models ./models
COPY colcon.meta ./
RUN . /opt/ros/jazzy/setup.sh && colcon build --base-paths src

COPY docker/robot_entrypoint.sh /robot_entrypoint.sh
ENTRYPOINT ["/robot_entrypoint.sh"]
CMD ["ros2", "launch", "flare_bringup", "stretch.launch.py"]
