#!/usr/bin/env bash
# Ready training command (README): fine-tunes SSD-VGG300 on the vehicle TFRecords in Images/tfrecords.
# Resumes automatically from ckpt/fine_tuning if it already holds a checkpoint.
# Extra flags are passed through, e.g.: ./command.sh --num_clones=2 --max_number_of_steps=200
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-.venv/bin/python}"
# oneDNN kernels are off by default on some CPUs (AMD) and faster for this network.
export TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-1}"
PRE_TRAINED=ckpt/pre_trained/ssd_300_vgg.ckpt
INIT_FLAGS=()
# Fine-tune from the public SSD-Tensorflow VOC checkpoint when present (its 21-class heads are
# left out), otherwise train from scratch.
if [ -e "${PRE_TRAINED}.index" ]; then
  INIT_FLAGS=(--pre_trained_path="${PRE_TRAINED}"
    --checkpoint_exclude_scopes=ssd_300_vgg/block4_box/conv_cls,ssd_300_vgg/block7_box/conv_cls,ssd_300_vgg/block8_box/conv_cls,ssd_300_vgg/block9_box/conv_cls,ssd_300_vgg/block10_box/conv_cls,ssd_300_vgg/block11_box/conv_cls)
fi
exec "$PYTHON" train_ssd_network.py \
  --train_model_dir=ckpt/fine_tuning \
  --dataset_dir=Images/tfrecords \
  --dataset_name=vehicle \
  --train_or_test=train \
  --model_name=ssd_vgg_300 \
  "${INIT_FLAGS[@]}" \
  --save_summaries_secs=60 \
  --save_interval_secs=600 \
  --weight_decay=0.0005 \
  --optimizer=adam \
  --learning_rate=0.001 \
  --learning_rate_decay_factor=0.94 \
  --batch_size=32 \
  --clone_on_cpu=true \
  --num_clones=1 \
  "$@"
