#!/usr/bin/env bash
# Starts TensorFlow Serving in Docker on an export of export_saved_model.py.
#   ./docker_run.sh [EXPORT_DIR] [MODEL_NAME]      (defaults: ./export ssd_vgg_300)
# EXPORT_DIR is the --export_dir given to the exporter; the model's versions live in
# EXPORT_DIR/MODEL_NAME/<version>/. gRPC answers on port 8500, REST on 8501.
# Environment: GRPC_PORT, REST_PORT (host ports), IMAGE (default tensorflow/serving),
# INTRA_OP_THREADS, INTER_OP_THREADS (TF Serving's --tensorflow_intra_op_parallelism and
# --tensorflow_inter_op_parallelism: session options do not travel in a SavedModel; 0 lets
# TensorFlow choose, bench/bench_threads.py measures which pays on this CPU),
# DRY_RUN=1 prints the docker command instead of running it.
set -euo pipefail

EXPORT_DIR=${1:-./export}
MODEL_NAME=${2:-ssd_vgg_300}
GRPC_PORT=${GRPC_PORT:-8500}
REST_PORT=${REST_PORT:-8501}
IMAGE=${IMAGE:-tensorflow/serving}
INTRA_OP_THREADS=${INTRA_OP_THREADS:-0}
INTER_OP_THREADS=${INTER_OP_THREADS:-0}

if [ "$#" -gt 2 ]; then
  echo "error: usage: $0 [EXPORT_DIR] [MODEL_NAME]" >&2
  exit 2
fi
MODEL_DIR="$EXPORT_DIR/$MODEL_NAME"
if [ ! -d "$MODEL_DIR" ]; then
  echo "error: model folder $MODEL_DIR not found: run export_saved_model.py --export_dir=$EXPORT_DIR --model_name=$MODEL_NAME first" >&2
  exit 1
fi
# Docker bind mounts need an absolute path.
MODEL_DIR=$(cd "$MODEL_DIR" && pwd)

CMD=(docker run --rm -t
     -p "$GRPC_PORT:8500" -p "$REST_PORT:8501"
     --mount "type=bind,source=$MODEL_DIR,target=/models/$MODEL_NAME"
     -e "MODEL_NAME=$MODEL_NAME"
     "$IMAGE"
     "--tensorflow_intra_op_parallelism=$INTRA_OP_THREADS"
     "--tensorflow_inter_op_parallelism=$INTER_OP_THREADS")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "error: docker not found: install Docker, or use the local server: python -m serving.model_server --model_name=$MODEL_NAME --model_base_path=$MODEL_DIR" >&2
  exit 1
fi
exec "${CMD[@]}"
