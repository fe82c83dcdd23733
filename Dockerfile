# syntax=docker/dockerfile:1
# runboat-temporal: one image, two entry points (same code, same kubefiles):
#   API:    node dist/api/main.js      (default; `--target api`)
#   worker: node dist/worker/main.js   (`--target worker`, or override the command)
# docker build -t runboat-temporal .          # API
# docker build -t runboat-temporal-worker --target worker .

ARG NODE_IMAGE=node:20-bookworm-slim
ARG GO_IMAGE=golang:1.26-bookworm

# All dependencies, for compiling.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Not `npm ci`: the lock file may lack other platforms' optional packages (see .ci/run).
RUN npm install --no-audit --no-fund

# TypeScript -> dist/, completed with the files the code reads beside itself (kubefiles, UI).
FROM deps AS build
COPY tsconfig.json ./
COPY common common
COPY workflows workflows
COPY activities activities
COPY worker worker
COPY api api
COPY kubefiles kubefiles
# Replayed by the worker before it polls (worker/self-check.ts), from dist/test/fixtures/histories.
COPY test/fixtures/histories test/fixtures/histories
COPY deploy/dist-assets.sh deploy/dist-assets.sh
# (test/, but for the recorded histories, and scripts/, but for the renderer's Go sources, are
# not in the build context: tsconfig.json's other folders compile alone.)
# The workflow code is bundled here, once, not by every worker at start (dist/workflow-bundle.js).
RUN npm run build && sh deploy/dist-assets.sh dist && node dist/worker/bundle.js

# Runtime dependencies only.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force

# The worker's kustomize renderer (scripts/kustomize-renderer: kustomize's Go module, pinned to
# the versions kubectl links), one long-lived process per worker instead of kubectl per render.
FROM ${GO_IMAGE} AS kustomize-renderer
WORKDIR /src
COPY scripts/kustomize-renderer ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /usr/local/bin/kustomize-renderer . \
  && printf '{"id":1,"dir":"/nowhere"}\n' | /usr/local/bin/kustomize-renderer | grep -q '"error"'

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    RUNBOAT_KUSTOMIZE_RENDERER=/usr/local/bin/kustomize-renderer \
    PORT=8000
WORKDIR /app
COPY --from=kustomize-renderer /usr/local/bin/kustomize-renderer /usr/local/bin/kustomize-renderer
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
# The image's `node` user (uid 1000); no file of the app is writable by it.
USER node
EXPOSE 8000

FROM runtime AS worker
# Within its 1 GiB (WORKER_PROCESS in worker/worker.ts says why).
ENV MALLOC_ARENA_MAX=2
# SIGTERM: the worker stops polling and lets in-flight activities finish.
STOPSIGNAL SIGTERM
CMD ["node", "--max-old-space-size=384", "dist/worker/main.js"]

FROM runtime AS api
STOPSIGNAL SIGTERM
CMD ["node", "dist/api/main.js"]
