# syntax=docker/dockerfile:1
# weft-controller: the control plane (Deployment). Build from the repository root (images/README.md):
#   docker build -f images/controller.Dockerfile --build-arg VERSION=0.1.0 -t weft/weft-controller:0.1.0 .
#
# The build stage is pinned by tag to the Node release package.json pins (tests/images.test.ts
# checks they agree). Distroless publishes no per-release tags: pin its digest for reproducible
# builds, gcr.io/distroless/nodejs24-debian12:nonroot@sha256:<digest from
# `docker buildx imagetools inspect`>.
ARG NODE_VERSION=24.21.0

# ---- build: the controller as one ES module ----
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so that this layer is rebuilt only when the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY api/ api/
COPY controller/ controller/
# The controller shares code with the agent (agent/policy: the Service port index).
COPY agent/ agent/
# Bundled with the agent's esbuild options (scripts/build-agent.ts) instead of running the .ts
# sources by type stripping: measured on Node 24.21, the controller started from its sources
# holds ~180 MB RSS, bundled ~109 MB; and the image needs no node_modules (the production
# dependencies include the 120 MB `node` package that only pins Node for development).
RUN ["node_modules/.bin/esbuild", "controller/main.ts", "--bundle", "--platform=node", "--format=esm", "--target=node24", "--legal-comments=none", "--log-level=warning", "--outfile=dist/controller/controller.mjs", "--banner:js=import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);"]

# ---- runtime ----
# Distroless: Node and glibc, no shell, no package manager, no npm. This is the process that
# holds the mesh's root key, so it gets the smallest image; it needs nothing but Node.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="weft-controller" \
      org.opencontainers.image.description="Weft controller: workload and policy state for the node agents, the mesh CA, policy status" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="https://weft.dev" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12:nonroot"

COPY --from=build /src/dist/controller/controller.mjs /app/controller.mjs

# distroless's "nonroot" user, spelled out: the chart's runAsUser and runAsGroup are 65532 too.
USER 65532:65532
# 15012: agent API (mTLS); 15014: health, readiness, metrics, /agents.
EXPOSE 15012 15014
# The base image's entrypoint is node. No HEALTHCHECK: Kubernetes probes /healthz and /readyz on 15014.
CMD ["/app/controller.mjs"]
