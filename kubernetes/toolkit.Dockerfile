# The toolkit's image for the training, evaluation and export pods (kubernetes/train-tfjob.yaml,
# kubernetes/export-job.yaml). Build from the repository root:
#   docker build -f kubernetes/toolkit.Dockerfile -t ssd-toolkit .
FROM python:3.11-slim

WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install --no-cache-dir -r requirements.txt && \
    pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
COPY datasets/ datasets/
COPY deployment/ deployment/
COPY model/ model/
COPY nets/ nets/
COPY preprocessing/ preprocessing/
COPY training/ training/
COPY utils/ utils/
COPY train_ssd_network.py eval_ssd_network.py export_saved_model.py detector.py ./
ENV PYTHONUNBUFFERED=1 MPLBACKEND=Agg
