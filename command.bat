@echo off
REM Ready training command (README): fine-tunes SSD-VGG300 on the vehicle TFRecords in Images\tfrecords.
REM Resumes automatically from ckpt\fine_tuning if it already holds a checkpoint.
REM Extra flags are passed through, e.g.: command.bat --num_clones=2 --max_number_of_steps=200
cd /d "%~dp0"
if "%PYTHON%"=="" set PYTHON=.venv\Scripts\python.exe
if "%TF_ENABLE_ONEDNN_OPTS%"=="" set TF_ENABLE_ONEDNN_OPTS=1
set INIT_FLAGS=
REM Fine-tune from the public SSD-Tensorflow VOC checkpoint when present (its 21-class heads are left out).
if exist ckpt\pre_trained\ssd_300_vgg.ckpt.index set INIT_FLAGS=--pre_trained_path=ckpt\pre_trained\ssd_300_vgg.ckpt --checkpoint_exclude_scopes=ssd_300_vgg/block4_box/conv_cls,ssd_300_vgg/block7_box/conv_cls,ssd_300_vgg/block8_box/conv_cls,ssd_300_vgg/block9_box/conv_cls,ssd_300_vgg/block10_box/conv_cls,ssd_300_vgg/block11_box/conv_cls
"%PYTHON%" train_ssd_network.py ^
  --train_model_dir=ckpt\fine_tuning ^
  --dataset_dir=Images\tfrecords ^
  --dataset_name=vehicle ^
  --train_or_test=train ^
  --model_name=ssd_vgg_300 ^
  %INIT_FLAGS% ^
  --save_summaries_secs=60 ^
  --save_interval_secs=600 ^
  --weight_decay=0.0005 ^
  --optimizer=adam ^
  --learning_rate=0.001 ^
  --learning_rate_decay_factor=0.94 ^
  --batch_size=32 ^
  --clone_on_cpu=true ^
  --num_clones=1 ^
  %*
