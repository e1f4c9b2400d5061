# checkstream proxy image: stage 1 builds the wheel (Rust extension included), stage 2 runs it
# as an unprivileged user with only the wheel, the shipped policies and the example config.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH="/root/.cargo/bin:${PATH}"
RUN pip install --no-cache-dir "maturin>=1.9,<2"
WORKDIR /src
COPY . .
RUN maturin build --release --out /wheels

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --create-home --home-dir /home/checkstream checkstream \
 && mkdir -p /etc/checkstream /var/lib/checkstream \
 && chown checkstream /var/lib/checkstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY policies/default /etc/checkstream/policies
COPY config.example.yaml /etc/checkstream/config.yaml
ENV CHECKSTREAM_CONFIG=/etc/checkstream/config.yaml
# Secrets (OPENAI_API_KEY / ANTHROPIC_API_KEY, CHECKSTREAM_ADMIN_TOKEN for POST /admin/reload)
# are given at run time from a secret store (docker run --env-file, a Kubernetes Secret, ECS
# secrets), never baked into the image with ENV.
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]
ENTRYPOINT ["checkstream", "proxy"]
