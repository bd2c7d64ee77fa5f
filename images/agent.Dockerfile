# syntax=docker/dockerfile:1
# weft-agent: the node agent (DaemonSet) and the weft-cni executable it installs on each node.
# Build from the repository root (images/README.md):
#   docker build -f images/agent.Dockerfile --build-arg VERSION=0.1.0 -t weft/weft-agent:0.1.0 .
#
# Base images are pinned by tag to the Node release package.json pins (tests/images.test.ts
# checks they agree). For reproducible builds pin the digest too, e.g.
# node:24.21.0-bookworm-slim@sha256:<digest from `docker buildx imagetools inspect`>.
ARG NODE_VERSION=24.21.0

# ---- build: the agent bundle, its Node-API addon and weft-cni (scripts/build.ts) ----
# The full image: scripts/build-native.ts needs cc, scripts/build-cni.ts needs strip.
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so that this layer is rebuilt only when the lockfile changes. No
# --ignore-scripts: the pinned Node (used to make weft-cni) and esbuild arrive by install scripts.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/ scripts/
COPY api/ api/
COPY agent/ agent/
COPY cni-plugin/ cni-plugin/
RUN node scripts/build.ts

# ---- runtime ----
# Debian slim rather than distroless: the agent runs nft and ip (nftables, iproute2), whose
# shared libraries distroless cannot install. Same Debian release as the build stage, so the
# addon links against the same glibc.
FROM node:${NODE_VERSION}-bookworm-slim
ARG NODE_VERSION
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="weft-agent" \
      org.opencontainers.image.description="Weft node agent: traffic capture, HBONE mTLS tunnels, L4/L7 policy; installs the weft-cni chained plugin" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="https://weft.dev" \
      org.opencontainers.image.base.name="docker.io/library/node:${NODE_VERSION}-bookworm-slim"

# nft programs the agent's `inet weft` table; ip finds a pod's host-side route. npm, npx and
# corepack are never run here: removing them takes their dependencies out of CVE scans.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack

# The bundle finds its addon at ../../dist/native/ relative to itself (agent/native/sockopt.ts),
# so both keep the repository's dist/ layout under /opt/weft.
COPY --from=build /src/dist/agent/agent.mjs /opt/weft/dist/agent/agent.mjs
COPY --from=build /src/dist/native/weft_sockopt.node /opt/weft/dist/native/weft_sockopt.node
# The agent's default WEFT_CNI_BINARY: at start it copies this file into the node's CNI bin dir.
COPY --from=build /src/dist/weft-cni /usr/local/lib/weft/weft-cni

# Root, on purpose: the chart runs the agent as uid 0 in the host network namespace with every
# capability dropped but NET_ADMIN (helm/weft/templates/agent-daemonset.yaml says why uid 0).
USER 0:0
# Host network: these are the node's ports (15001 and 15006 receive only redirected traffic,
# 15000 is bound to localhost).
EXPOSE 15008 15020 15021
# Node is PID 1: the agent handles SIGTERM (drain) itself and reaps the nft/ip it runs. No
# HEALTHCHECK: Kubernetes probes /healthz/live and /healthz/ready on 15021.
# `--uninstall` as the container's args removes the node's rules and the CNI plugin (docs/install.md).
ENTRYPOINT ["node", "/opt/weft/dist/agent/agent.mjs"]
