# syntax=docker/dockerfile:1
#
# GPU trainer image for the Container Apps job (serverless GPU: T4 or A100).
# @tensorflow/tfjs-node-gpu 4.22 binds libtensorflow 2.9 built for CUDA 11.x + cuDNN 8 on glibc,
# so the runtime base is NVIDIA's CUDA 11.8 + cuDNN 8 Ubuntu image. node_modules is installed in
# the image (never zipped from elsewhere): tfjs-node-gpu's libtensorflow symlinks survive.
#
# Build context (infra/hooks/postdeploy.sh assembles it): package.json, package-lock.json,
# tsconfig.json, src/, functions/. From the repository root by hand:
#   docker build -f infra/trainer.Dockerfile -t image-triage-trainer .
#   az acr build -r <registry> -t image-triage-trainer:latest -f infra/trainer.Dockerfile .

ARG CUDA_IMAGE=nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04
ARG NODE_MAJOR=22
ARG TFJS_VERSION=4.22.0

# ---- base: CUDA runtime + Node.js 22 (NodeSource apt repository) ------------------------------
FROM ${CUDA_IMAGE} AS base
ARG NODE_MAJOR
ENV DEBIAN_FRONTEND=noninteractive
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
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY functions ./functions
RUN npx tsc -p tsconfig.json

# ---- deps: production node_modules + tfjs-node-gpu (its install script fetches libtensorflow-gpu).
# The production dependencies include vega and vega-lite, which the trainer's plots need.
# tfjs-node-gpu's binding is N-API (napi-v3..v8 in its package.json), so it loads on Node 22.
FROM base AS deps
ARG TFJS_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts skips the CPU @tensorflow/tfjs-node download (not used on the GPU image);
# sharp ships its prebuilt libvips as a platform package and needs no script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm install --no-save --omit=dev --no-audit --no-fund "@tensorflow/tfjs-node-gpu@${TFJS_VERSION}" \
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
COPY --from=build --chown=root:root /build/dist ./dist
COPY --chown=root:root package.json ./
USER 10001:10001
ENTRYPOINT ["node", "dist/src/cli/main.js", "train-job"]
