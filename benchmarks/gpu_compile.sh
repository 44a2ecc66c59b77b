#!/usr/bin/env bash
# --compile on a GPU (issue 18, target 5): SAC and TD3 on HalfCheetah-v5 and PPO on ALE/Pong-v5 (the presets), each
# against the same code without --compile and against Stable-Baselines3, by benchmarks/compile_speed.py.
#
# Made for the device machine (Python 3.12, torch with CUDA, no internet): the packages it lacks travel as cp312 wheels
# in the git-ignored folder .whl/ (gymnasium, ale-py, mujoco, stable-baselines3, tyro and their needs). From the
# repository root, with .whl carried:
#     bash benchmarks/gpu_compile.sh          # writes $OUT/compile_gpu.{json,md,log} and $OUT/gpu.txt
# MuJoCo renders nothing here (MUJOCO_GL=disable: with egl, PyOpenGL found no EGL library on the device).
# About 6 minutes in all, the installation and compilation included: compile_speed.py starts no measurement after
# DEADLINE_S seconds, and is stopped at LIMIT_S (the files hold every row finished by then).
# Elsewhere (a CPU check of this script's logic): SKIP_INSTALL=1 DEVICE=cpu ROWS="sac:Pendulum-v1 ppo:CartPole-v1" \
#     STEPS=200 PPO_STEPS=1024 PPO_WARMUP=3072 LEARNING_STARTS=300 bash benchmarks/gpu_compile.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_compile}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
ROWS=${ROWS:-"sac:HalfCheetah-v5 ppo:ALE/Pong-v5 td3:HalfCheetah-v5"}
mkdir -p "$OUT"
start=$(date +%s)

if [ -z "${SKIP_INSTALL:-}" ]; then
    # no index: the wheels alone, without their needs (numpy, torch, cloudpickle... are there), into a folder of their own
    wheels=()
    for name in gymnasium farama_notifications ale_py mujoco mujoco_core mujoco_studio websockets glfw pyopengl \
        stable_baselines3 tyro docstring_parser typeguard typing_extensions shtab; do
        wheels+=(.whl/"$name"-*.whl)
    done
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}" \
        || { echo "installing the wheels of .whl/ failed" | tee "$OUT/compile_gpu.log"; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    # deeprl itself, editable and without its needs (no build isolation: nothing to download); PYTHONPATH has it anyway
    $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 || true
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=${MUJOCO_GL:-disable} PYTHONUNBUFFERED=1
echo "install: $(($(date +%s) - start)) s" | tee "$OUT/gpu.txt"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true; } >>"$OUT/gpu.txt"

# shellcheck disable=SC2086  # ROWS: one word per row
timeout "${LIMIT_S:-300}" $PY benchmarks/compile_speed.py --device "$DEVICE" --rows $ROWS --sb3 \
    --learning-starts "${LEARNING_STARTS:-1000}" --warmup "${WARMUP:-200}" --steps "${STEPS:-500}" \
    --ppo-warmup "${PPO_WARMUP:-4096}" --ppo-steps "${PPO_STEPS:-2048}" --repeats "${REPEATS:-3}" \
    --fallback-mode default --deadline-s "${DEADLINE_S:-240}" --out "$OUT/compile_gpu.json" 2>&1 \
    | tee "$OUT/compile_gpu.log"
status=${PIPESTATUS[0]}
echo "exit $status after $(($(date +%s) - start)) s" | tee -a "$OUT/gpu.txt"
exit "$status"
