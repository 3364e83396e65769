# Retraining in AI2-THOR on NVIDIA GPUs: torch (PyPI's Linux wheel, CUDA included), FLaRe's AI2-THOR build with
# CloudRendering (Vulkan, no X display), objathor for the Objaverse assets, and this project.
#   docker build -f docker/train.Dockerfile -t flare-train .
#   docker run --rm -it --gpus all --ipc=host -v /data:/data -v $PWD/runs:/flare/runs flare-train \
#       python -m flare_training ppo --env thor --thor-platform CloudRendering \
#           --thor-houses /data/houses --thor-assets /data/assets/2023_07_28 --init runs/bc_thor --out runs/ppo_thor
# /data holds the downloads the README's "Train in AI2-THOR on a GPU machine" lists (houses_2023_07_28, objathor's
# 2023_07_28 assets and annotations); runs/ the
# checkpoints, metrics and TensorBoard logs. AI2-THOR keeps its Unity build in /root/.ai2thor (fetched at the
# first start; mount a volume there to keep it between containers).
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04

# graphics: the NVIDIA container toolkit mounts the driver's Vulkan parts that CloudRendering renders with.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    DEBIAN_FRONTEND=noninteractive \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-dev build-essential git curl ca-certificates \
        libvulkan1 vulkan-tools libgl1 libglib2.0-0 libxext6 libsm6 \
    && rm -rf /var/lib/apt/lists/*
# The NVIDIA Vulkan ICD, in case the toolkit's graphics capability does not provide one.
RUN mkdir -p /usr/share/vulkan/icd.d && printf '%s\n' \
    '{"file_format_version": "1.0.0", "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.3"}}' \
    > /usr/share/vulkan/icd.d/nvidia_icd.json

WORKDIR /flare
COPY requirements.txt requirements-thor.txt ./
RUN pip3 install --no-cache-dir -r requirements.txt
# FLaRe's AI2-THOR build from Allen AI's index; it asks for opencv-python, whose cv2 would shadow the
# project's opencv-python-headless: the headless one is put back.
RUN pip3 install --no-cache-dir --extra-index-url https://ai2thor-pypi.allenai.org -r requirements-thor.txt \
    && pip3 uninstall -y opencv-python \
    && pip3 install --no-cache-dir --force-reinstall --no-deps "$(grep opencv-python-headless requirements.txt)"

COPY src ./src
COPY sim_training ./sim_training
COPY models ./models
RUN pip3 install --no-cache-dir --no-deps -e src/flare_core -e src/flare_sim -e sim_training \
    && python3 -c "import flare_training.thor.env, ai2thor.controller, ai2thor.hooks.procedural_asset_hook"

CMD ["python3", "-m", "flare_training", "ppo", "--help"]
