# syntax=docker/dockerfile:1
#
# GPU trainer image for the Container Apps job (serverless GPU: T4 or A100).
# @tensorflow/tfjs-node-gpu 4.22 binds libtensorflow 2.9 built for CUDA 11.x + cuDNN 8 on glibc,
# so the runtime base is NVIDIA's CUDA 11.8 + cuDNN 8 Ubuntu image. node_modules is installed in
# the image (never zipped from elsewhere): tfjs-node-gpu's libtensorflow symlinks survive.
#
# Build context (infra/hooks/postdeploy.sh assembles it): package.json, package-lock.json,
# tsconfig.json, packages/, src/, functions/, infra/trainer/. From the repository root by hand:
#   docker build -f infra/trainer.Dockerfile -t image-triage-trainer .
#   az acr build -r <registry> -t image-triage-trainer:latest -f infra/trainer.Dockerfile .
#
# Reproducible inputs: the base image is pinned by digest (CUDA_IMAGE; the build refuses a
# reference without one), and every npm package comes from a lockfile with `npm ci`: the
# repository's for the TypeScript build, infra/trainer/package-lock.json (written by
# infra/trainer/lock.sh: the same production versions plus @tensorflow/tfjs-node-gpu) for the
# runtime. Moving to a newer base: `docker buildx imagetools inspect nvidia/cuda:<tag>` prints the
# tag's current digest; set it here (or pass --build-arg CUDA_IMAGE=nvidia/cuda:<tag>@sha256:<digest>).

# nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04 as published when this digest was recorded.
ARG CUDA_IMAGE=nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04@sha256:85fb7ac694079fff1061a0140fd5b5a641997880e12112d92589c3bbb1e8b7ca
ARG NODE_MAJOR=22

# ---- base: CUDA runtime + Node.js 22 (NodeSource apt repository) ------------------------------
FROM ${CUDA_IMAGE} AS base
ARG CUDA_IMAGE
ARG NODE_MAJOR
ENV DEBIAN_FRONTEND=noninteractive
# A tag alone can be moved to other bytes; only a digest names one image.
RUN case "$CUDA_IMAGE" in \
      *@sha256:????????????????????????????????????????????????????????????????) ;; \
      *) echo "CUDA_IMAGE must be pinned by digest (<image>:<tag>@sha256:<64 hex>), got: $CUDA_IMAGE" >&2; exit 1 ;; \
    esac
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && mkdir -p /etc/apt/keyrings \
 && curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key \
      | gpg --dearmor -o /etc/apt/keyrings/nodesource.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_${NODE_MAJOR}.x nodistro main" \
      > /etc/apt/sources.list.d/nodesource.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends nodejs \
 && apt-get purge -y gnupg \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

# ---- build: compile the TypeScript (dev dependencies, no install scripts needed) --------------
FROM base AS build
WORKDIR /build
# The workspace packages (packages/*) before `npm ci`: the lockfile lists them, and npm links them.
COPY package.json package-lock.json ./
COPY packages ./packages
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY functions ./functions
RUN npx tsc -b tsconfig.json

# ---- deps: production node_modules + tfjs-node-gpu, all from infra/trainer/package-lock.json.
# The production dependencies include vega and vega-lite, which the trainer's plots need.
# tfjs-node-gpu's binding is N-API (napi-v3..v8 in its package.json), so it loads on Node 22.
FROM base AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY infra/trainer/package.json infra/trainer/package-lock.json ./
# --ignore-scripts skips every install script (the CPU @tensorflow/tfjs-node download among them:
# not used on the GPU image; sharp ships its prebuilt libvips as a platform package and needs none);
# then only tfjs-node-gpu's runs, fetching libtensorflow for CUDA.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild @tensorflow/tfjs-node-gpu \
 && npm cache clean --force

# ---- runtime ---------------------------------------------------------------------------------
FROM base AS runtime
ENV NODE_ENV=production \
    TRIAGE_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN groupadd --system --gid 10001 triage \
 && useradd --system --uid 10001 --gid triage --home-dir /app --no-create-home --shell /usr/sbin/nologin triage
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
# The workspace packages the compiled code imports by name, as plain folders (what each publishes).
COPY --from=build --chown=root:root /build/packages/tfjs-wasm-kernels/package.json ./node_modules/@image-triage/tfjs-wasm-kernels/
COPY --from=build --chown=root:root /build/packages/tfjs-wasm-kernels/dist ./node_modules/@image-triage/tfjs-wasm-kernels/dist
COPY --from=build --chown=root:root /build/packages/local-functions-host/package.json ./node_modules/@image-triage/local-functions-host/
COPY --from=build --chown=root:root /build/packages/local-functions-host/dist ./node_modules/@image-triage/local-functions-host/dist
COPY --from=build --chown=root:root /build/dist ./dist
COPY --chown=root:root package.json ./
USER 10001:10001
ENTRYPOINT ["node", "dist/src/cli/main.js", "train-job"]
