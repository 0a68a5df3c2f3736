#!/usr/bin/env bash
# Ready fine-tuning command (README "Train"): SSD-VGG300 from ImageNet VGG-16 on the vehicle
# TFRecords in Images/tfrecords (split train), with the recipe measured by bench/bench_finetune.py.
# VGG-16: ckpt/pre_trained/vgg_16.ckpt (slim's, with or without fc6/fc7), or set PRE_TRAINED.
# Resumes automatically from ckpt/fine_tuning if it already holds a checkpoint.
# Extra flags are passed through and win, e.g.: ./command.sh --max_number_of_steps=3000
# --precision=auto (the default) computes in bfloat16 where the CPU has AVX512_BF16 or AMX and
# turns oneDNN on for it; float32 elsewhere.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-.venv/bin/python}"
PRE_TRAINED="${PRE_TRAINED:-ckpt/pre_trained/vgg_16.ckpt}"
if [ ! -e "${PRE_TRAINED}.index" ] && [ -z "$(ls ckpt/fine_tuning/checkpoint 2>/dev/null)" ]; then
  echo "error: ${PRE_TRAINED}.index not found: put slim's vgg_16.ckpt (or any VGG-16 checkpoint in its names) there, or set PRE_TRAINED" >&2
  exit 1
fi
exec "$PYTHON" train_ssd_network.py \
  --train_model_dir=ckpt/fine_tuning \
  --dataset_dir=Images/tfrecords \
  --dataset_name=vehicle \
  --train_or_test=train \
  --model_name=ssd_vgg_300 \
  --pre_trained_path="${PRE_TRAINED}" \
  --trainable_scopes=ssd_300_vgg/conv4,ssd_300_vgg/conv5,ssd_300_vgg/conv6,ssd_300_vgg/conv7,ssd_300_vgg/block8,ssd_300_vgg/block9,ssd_300_vgg/block10,ssd_300_vgg/block11,ssd_300_vgg/block4_box,ssd_300_vgg/block7_box,ssd_300_vgg/block8_box,ssd_300_vgg/block9_box,ssd_300_vgg/block10_box,ssd_300_vgg/block11_box \
  --weights_initializer=he \
  --head_init_stddev=0.001 \
  --optimizer=adam \
  --learning_rate=0.0001 \
  --warmup_steps=100 \
  --learning_rate_decay_type=polynomial \
  --end_learning_rate=0.00001 \
  --num_epochs_per_decay=0 \
  --max_number_of_steps=1600 \
  --weight_decay=0.0005 \
  --batch_size=8 \
  --zoom_out=true \
  --photometric_distortion=true \
  --clone_on_cpu=true \
  --num_clones=1 \
  --save_summaries_secs=60 \
  --save_interval_secs=600 \
  "$@"
