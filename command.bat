@echo off
REM Ready fine-tuning command (README "Train"): SSD-VGG300 from ImageNet VGG-16 on the vehicle
REM TFRecords in Images\tfrecords (split train), with the recipe measured by bench\bench_finetune.py.
REM VGG-16: ckpt\pre_trained\vgg_16.ckpt (slim's, with or without fc6/fc7), or set PRE_TRAINED.
REM Resumes automatically from ckpt\fine_tuning if it already holds a checkpoint.
REM Extra flags are passed through and win, e.g.: command.bat --max_number_of_steps=3000
REM --precision=auto (the default) computes in bfloat16 where the CPU has AVX512_BF16 or AMX and
REM turns oneDNN on for it; float32 elsewhere.
cd /d "%~dp0"
if "%PYTHON%"=="" set PYTHON=.venv\Scripts\python.exe
if "%PRE_TRAINED%"=="" set PRE_TRAINED=ckpt\pre_trained\vgg_16.ckpt
if not exist "%PRE_TRAINED%.index" if not exist ckpt\fine_tuning\checkpoint (
  echo error: %PRE_TRAINED%.index not found: put slim's vgg_16.ckpt ^(or any VGG-16 checkpoint in its names^) there, or set PRE_TRAINED 1>&2
  exit /b 1
)
"%PYTHON%" train_ssd_network.py ^
  --train_model_dir=ckpt\fine_tuning ^
  --dataset_dir=Images\tfrecords ^
  --dataset_name=vehicle ^
  --train_or_test=train ^
  --model_name=ssd_vgg_300 ^
  --pre_trained_path=%PRE_TRAINED% ^
  --trainable_scopes=ssd_300_vgg/conv4,ssd_300_vgg/conv5,ssd_300_vgg/conv6,ssd_300_vgg/conv7,ssd_300_vgg/block8,ssd_300_vgg/block9,ssd_300_vgg/block10,ssd_300_vgg/block11,ssd_300_vgg/block4_box,ssd_300_vgg/block7_box,ssd_300_vgg/block8_box,ssd_300_vgg/block9_box,ssd_300_vgg/block10_box,ssd_300_vgg/block11_box ^
  --weights_initializer=he ^
  --head_init_stddev=0.001 ^
  --optimizer=adam ^
  --learning_rate=0.0001 ^
  --warmup_steps=100 ^
  --learning_rate_decay_type=polynomial ^
  --end_learning_rate=0.00001 ^
  --num_epochs_per_decay=0 ^
  --max_number_of_steps=1600 ^
  --weight_decay=0.0005 ^
  --batch_size=8 ^
  --zoom_out=true ^
  --photometric_distortion=true ^
  --clone_on_cpu=true ^
  --num_clones=1 ^
  --save_summaries_secs=60 ^
  --save_interval_secs=600 ^
  %*
