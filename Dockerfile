# A JupyterLab notebook image with echo-widget and its demo notebook.
#   docker build -t echo-widget .
#   docker run --rm --network host -e JUPYTER_TOKEN=choose-one echo-widget
# then open http://127.0.0.1:8888/lab/tree/notebooks/echo.ipynb?token=choose-one
# (the camera needs a secure context: localhost, or https in front of it).
ARG BASE=python:3.12-slim

# The recorder only remuxes (-c copy), so its ffmpeg is built here from the distribution's
# source: every container format, no encoders, no external libraries, and decoders for
# VP8, VP9 and Opus only (to check a recording). About 10 MB, where the distribution's
# ffmpeg package brings 450 MB of codec libraries (and imageio-ffmpeg's binary 170 MB).
FROM ${BASE} AS ffmpeg
RUN sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources \
    && apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make xz-utils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN apt-get update \
    && apt-get source --download-only ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && tar -xf ffmpeg_*.orig.tar.xz --strip-components=1
# (no x86 assembly and -Os: remuxing needs no speed)
RUN ./configure --prefix=/opt/ffmpeg --disable-everything --disable-autodetect \
        --disable-network --disable-ffplay --disable-doc --disable-debug \
        --disable-x86asm --enable-small \
        --enable-protocol=file,pipe --enable-demuxers --enable-muxers --enable-parsers \
        --enable-bsfs --enable-decoder=vp8,vp9,opus \
        --enable-encoder=wrapped_avframe,pcm_s16le --enable-filter=scale,aresample \
    && make -j"$(nproc)" \
    && make install

FROM ${BASE}
COPY --from=ffmpeg /opt/ffmpeg/bin/ffmpeg /opt/ffmpeg/bin/ffprobe /usr/local/bin/

RUN useradd --create-home --uid 1000 --shell /bin/bash jovyan

# The widget's JavaScript ships inside the package: no node is needed.
COPY pyproject.toml README.md LICENSE /tmp/echo-widget/
COPY echo_widget/ /tmp/echo-widget/echo_widget/
COPY js/widget.css /tmp/echo-widget/js/
# The ffmpeg above is on PATH, so imageio-ffmpeg's bundled copy (170 MB), the fallback for
# machines without one, is removed; so are numpy's and matplotlib's own test suites (25 MB).
RUN pip install --no-cache-dir "/tmp/echo-widget[lab]" \
    && pip uninstall -y imageio-ffmpeg \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && rm -rf /tmp/echo-widget "$site"/numpy/tests "$site"/numpy/*/tests "$site"/matplotlib/tests

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
