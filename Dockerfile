# A JupyterLab notebook image with echo-widget and its demo notebook.
#   docker build -t echo-widget .
#   docker run --rm --network host -e JUPYTER_TOKEN=choose-one echo-widget
# then open http://127.0.0.1:8888/lab/tree/notebooks/echo.ipynb?token=choose-one
# (the camera needs a secure context: localhost, or https in front of it).
ARG BASE=python:3.12-slim
FROM ${BASE}

# ffmpeg from the distribution records the echo (remuxing only: no codecs are compiled here).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 --shell /bin/bash jovyan

# The widget's JavaScript ships inside the package: no node is needed.
COPY pyproject.toml README.md LICENSE /tmp/echo-widget/
COPY echo_widget/ /tmp/echo-widget/echo_widget/
COPY js/widget.css /tmp/echo-widget/js/
# The distribution's ffmpeg is on PATH, so imageio-ffmpeg's bundled copy (165 MB), the
# fallback for machines without one, is removed.
RUN pip install --no-cache-dir "/tmp/echo-widget[lab]" \
    && pip uninstall -y imageio-ffmpeg \
    && rm -rf /tmp/echo-widget

COPY docker/healthcheck.py /usr/local/bin/echo-widget-healthcheck
USER 1000
WORKDIR /home/jovyan
COPY --chown=1000:1000 notebooks/ notebooks/
# No "get notified about Jupyter news?" prompt over the demo (and no calls out for it).
COPY --chown=1000:1000 docker/notification.jupyterlab-settings \
    .jupyter/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings

EXPOSE 8888
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/echo-widget-healthcheck"]
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", \
     "--ServerApp.root_dir=/home/jovyan"]
