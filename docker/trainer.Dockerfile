# syntax=docker/dockerfile:1
# The training image run by KubernetesTrainModelOperator pods: CUDA runtime, Python 3.11, the airflow-mlops
# package with only what the training entrypoint needs (no Airflow: the trainer never imports it), torch with
# CUDA, and a non-root user. Versions come from constraints.txt, so pods run what the test suite ran.
#
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/airflow-mlops/trainer:0.1.0 .
#   docker run --rm --gpus all -e MLFLOW_TRACKING_URI=http://mlflow:5000 \
#       ghcr.io/airflow-mlops/trainer:0.1.0 python -m airflow_mlops.training --spec /specs/train.json
#
# The root filesystem can be mounted read-only: everything the trainer writes goes to /tmp (HOME and TMPDIR
# point there), so give the pod an emptyDir volume at /tmp.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY pyproject.toml README.md constraints.txt /tmp/src/
COPY airflow_mlops /tmp/src/airflow_mlops
# --no-deps keeps Airflow and the UI/report libraries out; the second line installs what training imports,
# pinned by constraints.txt (torch from PyPI ships its CUDA libraries as wheels).
RUN pip install --no-deps /tmp/src \
    && pip install --constraint /tmp/src/constraints.txt \
        torch mlflow scikit-learn skops pandas pyarrow fsspec s3fs xxhash \
    && rm -rf /tmp/src \
    && python -c "import airflow_mlops.training.runner, torch, sklearn, mlflow; print('trainer ok, torch', torch.__version__)" \
    && ! python -c "import airflow" 2>/dev/null

RUN useradd --uid 50000 --gid 0 --no-create-home --home-dir /tmp trainer
USER 50000
ENV HOME=/tmp TMPDIR=/tmp MPLCONFIGDIR=/tmp MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
WORKDIR /tmp

# The operators set the command (python -m airflow_mlops.training --spec ...); this default prints the usage.
CMD ["python", "-m", "airflow_mlops.training", "--help"]
