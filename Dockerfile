# The listener image, built from this repository (the package is not published):
#   docker build -t scaleset-listener:0.1 .
FROM python:3.12-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md CHANGELOG.md LICENSE ./
COPY scaleset_client ./scaleset_client
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin scaleset
USER 10001:10001
ENTRYPOINT ["scaleset-listen"]
