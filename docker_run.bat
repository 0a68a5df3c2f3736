@echo off
rem Starts TensorFlow Serving in Docker on an export of export_saved_model.py.
rem   docker_run.bat [EXPORT_DIR] [MODEL_NAME]      (defaults: .\export ssd_vgg_300)
rem The model's versions live in EXPORT_DIR\MODEL_NAME\<version>\. gRPC on 8500, REST on 8501.
rem Environment: GRPC_PORT, REST_PORT (host ports), IMAGE (default tensorflow/serving),
rem INTRA_OP_THREADS, INTER_OP_THREADS (TF Serving's --tensorflow_intra_op_parallelism and
rem --tensorflow_inter_op_parallelism; 0 lets TensorFlow choose, see docker_run.sh),
rem DRY_RUN=1 prints the docker command instead of running it.
setlocal

set "EXPORT_DIR=%~1"
if "%EXPORT_DIR%"=="" set "EXPORT_DIR=.\export"
set "MODEL_NAME=%~2"
if "%MODEL_NAME%"=="" set "MODEL_NAME=ssd_vgg_300"
if "%GRPC_PORT%"=="" set "GRPC_PORT=8500"
if "%REST_PORT%"=="" set "REST_PORT=8501"
if "%IMAGE%"=="" set "IMAGE=tensorflow/serving"
if "%INTRA_OP_THREADS%"=="" set "INTRA_OP_THREADS=0"
if "%INTER_OP_THREADS%"=="" set "INTER_OP_THREADS=0"

if not exist "%EXPORT_DIR%\%MODEL_NAME%\" (
  echo error: model folder %EXPORT_DIR%\%MODEL_NAME% not found: run export_saved_model.py --export_dir=%EXPORT_DIR% --model_name=%MODEL_NAME% first 1>&2
  exit /b 1
)
rem Docker bind mounts need an absolute path.
for %%I in ("%EXPORT_DIR%\%MODEL_NAME%") do set "MODEL_DIR=%%~fI"

set CMD=docker run --rm -t -p %GRPC_PORT%:8500 -p %REST_PORT%:8501 --mount "type=bind,source=%MODEL_DIR%,target=/models/%MODEL_NAME%" -e MODEL_NAME=%MODEL_NAME% %IMAGE% --tensorflow_intra_op_parallelism=%INTRA_OP_THREADS% --tensorflow_inter_op_parallelism=%INTER_OP_THREADS%

if "%DRY_RUN%"=="1" (
  echo %CMD%
  exit /b 0
)
%CMD%
