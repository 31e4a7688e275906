# syntax=docker/dockerfile:1
#
# The throughput pipeline's image: one image for the Beam SDK workers and for the driver that
# launches a run.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/throughput:0.1.0 .
#
# * Dataflow workers:      --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/throughput:0.1.0
# * Flink / Spark workers: --environment_type=DOCKER --environment_config=<the same image>
# * the driver (it lists the inputs, submits the job, waits, then commits the run):
#       docker run --rm --entrypoint python <image> -m pipelines.run --runner=DataflowRunner ...
#
# The entrypoint stays Beam's /opt/apache/beam/boot: runners start workers through it.
# See docs/SCALE_OUT.md.

ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS worker
ARG BEAM_VERSION

WORKDIR /opt/throughput
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY transforms ./transforms
COPY pipelines ./pipelines
COPY intake ./intake

# The SDK image already holds apache-beam ${BEAM_VERSION} with its GCP and AWS extras; pinning it
# here keeps pip from replacing it, so workers run exactly the SDK of the image (and of the
# driver). A plain (non-editable) install: workers import the packages from site-packages.
RUN pip install --no-cache-dir "apache-beam[gcp,aws]==${BEAM_VERSION}" . \
    && python -c "import pipelines.run, transforms.write, schemas.tables; import apache_beam as b; assert b.__version__ == '${BEAM_VERSION}', b.__version__"

# Workers must not need the sources: they run from the installed package.
WORKDIR /
ENTRYPOINT ["/opt/apache/beam/boot"]


# A Dataflow Flex Template image (docker build --target flex-template ...). Read the caveat in
# docs/SCALE_OUT.md first: a template only builds the job graph, so the driver-side commit of a
# run never happens as the pipeline stands.
FROM worker AS flex-template
COPY --from=gcr.io/dataflow-templates-base/python311-template-launcher-base:latest \
     /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/throughput/pipelines/run.py
ENTRYPOINT ["/opt/apache/beam/boot"]
