import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { parse } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { startBuild } from '../api/build-client';
import { searchAttributeDeclarations } from '../common/search-attributes';
import { binary } from '../scripts/paths';
import { WORKER_PROCESS } from '../worker/worker';
import { buildWorkflowId } from '../workflows/definitions';
import { freePort } from '../scripts/processes';
import { bundleQuietly, serviceEnv, SHA, TestCluster, testConfig, waitFor } from './helpers';

// What of the production packaging can run here, where no container engine runs and no image
// can be pulled: the compose file's structure (and `docker compose config` where the CLI is),
// its Temporal setup script against a real Temporal server, the Dockerfile's stages, and the
// images' entry points, built as the Dockerfile builds them, run by Node against the substrate.

const execFileAsync = promisify(execFile);
const root = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

interface ComposeService {
  image?: string;
  build?: { context: string; target?: string };
  env_file?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  entrypoint?: string[];
  command?: string[];
  ports?: string[];
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, ComposeService>;
};

/** `docker compose` as the docker CLI plugin, else the `docker-compose` v2 that provisioning installs. */
function composeCommand(): string[] {
  if (spawnSync('docker', ['compose', 'version']).status === 0) return ['docker', 'compose'];
  return [binary('docker-compose')];
}

/** A compose command string as the container's shell receives it (compose turns `$$` into `$`). */
const shellOf = (service: ComposeService) => {
  expect(service.entrypoint).toEqual(['/bin/sh', '-c']);
  return service.command![0].replaceAll('$$', '$');
};

describe('docker-compose.yml', () => {
  it('runs Temporal on PostgreSQL, its Web UI, the worker and the API', () => {
    const { services } = compose;
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['postgresql', 'temporal', 'temporal-ui', 'temporal-setup', 'worker', 'api']),
    );
    expect(services.postgresql.image).toMatch(/^postgres:/);
    expect(services.temporal.image).toMatch(/^temporalio\/server:/);
    expect(services.temporal.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services['temporal-ui'].image).toMatch(/^temporalio\/ui:/);
    expect(services['temporal-ui'].environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');

    const stages = dockerfileStages();
    for (const [name, target] of [
      ['worker', 'worker'],
      ['api', 'api'],
    ]) {
      const service = services[name];
      expect(service.build).toEqual({ context: '.', target });
      expect(stages.has(target)).toBe(true);
      // Configured from an .env file; only the address of Temporal is the compose network's.
      expect(service.env_file).toEqual(['${RUNBOAT_ENV_FILE:-.env}']);
      expect(service.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
      expect(service.depends_on?.['temporal-setup']).toEqual({ condition: 'service_completed_successfully' });
    }
  });

  it('pins the Temporal and PostgreSQL versions that test/production-shape.test.ts runs', () => {
    const { services } = compose;
    // scripts/provision.sh temporal-server builds this version; Debian 12's PostgreSQL is 15.
    const provisioned = /TEMPORAL_SERVER_VERSION="\$\{TEMPORAL_SERVER_VERSION:-v([\d.]+)\}"/.exec(
      read('scripts/provision.sh'),
    )?.[1];
    expect(provisioned).toBeDefined();
    for (const name of ['temporal', 'temporal-schema', 'temporal-setup'])
      expect(services[name].image).toMatch(new RegExp(`:\\$\\{TEMPORAL_\\w+:-${provisioned}\\}$`));
    expect(services.postgresql.image).toBe('postgres:${POSTGRES_VERSION:-15}');
    expect(services.temporal.environment?.NUM_HISTORY_SHARDS).toBe('4');
  });

  it("registers exactly the project's search attributes", () => {
    const script = shellOf(compose.services['temporal-setup']);
    const declared = [...script.matchAll(/^\s*search_attribute (\w+) (\w+)$/gm)].map(
      ([, n, t]) => `${n}=${t}`,
    );
    expect(declared.sort()).toEqual(searchAttributeDeclarations().sort());
    expect(script).toContain('temporal operator search-attribute create');
  });

  const command = composeCommand();
  it('is valid for `docker compose config`', async () => {
    const envFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'runboat-compose-')), '.env');
    writeFileSync(
      envFile,
      'RUNBOAT_BUILD_NAMESPACE=runboat-builds\nRUNBOAT_BUILD_DOMAIN=runboat.example.com\n',
    );
    const [file, ...args] = command;
    const { stdout } = await execFileAsync(
      file,
      [...args, '-f', path.join(root, 'docker-compose.yml'), 'config', '--format', 'json'],
      { env: { ...process.env, RUNBOAT_ENV_FILE: envFile } },
    );
    const config = JSON.parse(stdout) as {
      services: Record<string, ComposeService & { environment: object }>;
    };
    expect(config.services.api.environment).toMatchObject({
      RUNBOAT_BUILD_NAMESPACE: 'runboat-builds',
      TEMPORAL_ADDRESS: 'temporal:7233',
    });
    expect(config.services.worker.environment).toMatchObject({ RUNBOAT_BUILD_DOMAIN: 'runboat.example.com' });
    // The setup script is left to the container's shell: nothing in it was interpolated.
    expect(config.services['temporal-setup'].command).toEqual(compose.services['temporal-setup'].command);
  });

  it('creates the namespace and the search attributes on a Temporal server, idempotently', async () => {
    const namespace = `compose-${randomBytes(3).toString('hex')}`;
    const script = shellOf(compose.services['temporal-setup']);
    const run = () =>
      execFileAsync('/bin/sh', ['-c', script], {
        env: {
          ...process.env,
          PATH: `${path.dirname(binary('temporal'))}:${process.env.PATH}`,
          TEMPORAL_ADDRESS: inject('temporalAddress'),
          RUNBOAT_TEMPORAL_NAMESPACE: namespace,
        },
        timeout: 100_000,
      });
    expect((await run()).stdout).toContain(`namespace ${namespace} ready`);
    // Again, as on every `docker compose up`: everything exists already.
    expect((await run()).stdout).toContain(`namespace ${namespace} ready`);

    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
      const typeName: Record<number, string> = {
        [proto.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]: 'Keyword',
        [proto.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT]: 'Int',
        [proto.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DATETIME]: 'Datetime',
      };
      const registered = Object.entries(customAttributes ?? {})
        .filter(([name]) => name.startsWith('Runboat'))
        .map(([name, type]) => `${name}=${typeName[type] ?? type}`);
      expect(registered.sort()).toEqual(searchAttributeDeclarations().sort());
    } finally {
      await connection.close();
    }
  });
});

/** Stage name -> its instructions, from the Dockerfile. */
function dockerfileStages(): Map<string, string[]> {
  const stages = new Map<string, string[]>();
  let current: string[] = [];
  const lines = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  for (const line of lines) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) {
      current = [];
      stages.set(from[1] ?? `stage${stages.size}`, current);
    }
    current.push(line);
  }
  return stages;
}

describe('Dockerfile', () => {
  const stages = dockerfileStages();
  it('has an entry point per process, run by a non-root user on a slim Node image', () => {
    const workerCommand = ['node', ...WORKER_PROCESS.nodeArgs, 'dist/worker/main.js'];
    expect(stages.get('worker')).toContain(`CMD ${JSON.stringify(workerCommand).replaceAll(',', ', ')}`);
    for (const [name, value] of Object.entries(WORKER_PROCESS.env))
      expect(stages.get('worker')).toContain(`ENV ${name}=${value}`);
    expect(stages.get('api')).toContain('CMD ["node", "dist/api/main.js"]');
    const runtime = stages.get('runtime')!;
    expect(runtime[0]).toMatch(/^FROM \$\{NODE_IMAGE\} AS runtime$/);
    expect(read('Dockerfile')).toMatch(/^ARG NODE_IMAGE=node:20-[a-z]+-slim$/m);
    expect(runtime).toContain('USER node');
    expect(stages.get('worker')![0]).toBe('FROM runtime AS worker');
    expect(stages.get('api')![0]).toBe('FROM runtime AS api');
    // The workflow code is bundled when the image is built, beside the compiled code it runs.
    expect(stages.get('build')!.join('\n')).toMatch(/node dist\/worker\/bundle\.js/);
    // The kustomize renderer, at the path the configuration is given.
    expect(runtime.join('\n')).toMatch(/RUNBOAT_KUSTOMIZE_RENDERER=\/usr\/local\/bin\/kustomize-renderer/);
    expect(runtime).toContain(
      'COPY --from=kustomize-renderer /usr/local/bin/kustomize-renderer /usr/local/bin/kustomize-renderer',
    );
  });

  it('builds the kustomize renderer from its Go sources, with a Go that its go.mod accepts', () => {
    const renderer = stages.get('kustomize-renderer')!;
    expect(renderer[0]).toBe('FROM ${GO_IMAGE} AS kustomize-renderer');
    expect(renderer).toContain('COPY scripts/kustomize-renderer ./');
    expect(renderer.join('\n')).toMatch(/go build .*-o \/usr\/local\/bin\/kustomize-renderer \./);
    const version = (text: string) => text.split('.').map(Number);
    const image = /^ARG GO_IMAGE=golang:(\d+\.\d+)-/m.exec(read('Dockerfile'))![1];
    const needed = /^go (\d+\.\d+)/m.exec(read('scripts/kustomize-renderer/go.mod'))![1];
    const [[imageMajor, imageMinor], [neededMajor, neededMinor]] = [version(image), version(needed)];
    expect(imageMajor * 1000 + imageMinor).toBeGreaterThanOrEqual(neededMajor * 1000 + neededMinor);
  });

  it('copies only what the build context holds, as BuildKit sends it through .dockerignore', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .filter((line) => line && !line.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.env', '.git']));
    // BuildKit's own walker and pattern reader (scripts/docker-context), on this tree.
    const sent = execFileSync(binary('docker-context'), [root], { encoding: 'utf8', maxBuffer: 64 << 20 })
      .split('\n')
      .filter(Boolean);
    const holds = (source: string) => sent.some((file) => file === source || file.startsWith(`${source}/`));
    for (const line of [...stages.values()].flat()) {
      const copy = /^COPY\s+(?!--from)(.+)\s+\S+$/.exec(line);
      if (!copy) continue;
      for (const source of copy[1].split(/\s+/)) {
        expect(existsSync(path.join(root, source)), source).toBe(true);
        expect(holds(source), `${source} is in the build context`).toBe(true);
      }
    }
    // The recorded histories the worker replays at start are sent; the rest of test/ is not.
    expect(holds(path.posix.join('test', 'fixtures', 'histories', 'releases.json'))).toBe(true);
    expect(
      sent.filter((file) => file.startsWith('test/') && !file.startsWith('test/fixtures/histories/')),
    ).toEqual([]);
    for (const left of ['node_modules', '.git', 'dist', 'scripts/bench.ts'])
      expect(holds(left), left).toBe(false);
  });
});

describe('deploy/', () => {
  it("starts the worker as the image does, within its Deployment's memory limit", () => {
    const deployment = parse(read('deploy/worker.yaml')) as {
      spec: {
        template: {
          spec: { containers: Array<{ command: string[]; env?: Array<{ name: string; value: string }> }> };
        };
      };
    };
    const [container] = deployment.spec.template.spec.containers;
    expect(container.command).toEqual(['node', ...WORKER_PROCESS.nodeArgs, 'dist/worker/main.js']);
    expect(Object.fromEntries((container.env ?? []).map(({ name, value }) => [name, value]))).toMatchObject(
      WORKER_PROCESS.env,
    );
  });

  it('rolls a new worker image out only as its pods get ready, which its self-check gates', () => {
    interface Probe {
      httpGet: { path: string; port: string };
    }
    const deployment = parse(read('deploy/worker.yaml')) as {
      spec: {
        strategy: { rollingUpdate: { maxUnavailable: number } };
        template: {
          spec: {
            containers: Array<{
              env: Array<{ name: string; value: string }>;
              ports: Array<{ name: string; containerPort: number }>;
              readinessProbe: Probe;
              livenessProbe: Probe;
            }>;
          };
        };
      };
    };
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    const [container] = deployment.spec.template.spec.containers;
    const address = container.env.find(({ name }) => name === 'RUNBOAT_WORKER_HEALTH_ADDRESS')?.value;
    const port = container.ports.find(({ containerPort }) => `${containerPort}` === address?.split(':')[1]);
    expect(port, `a container port for RUNBOAT_WORKER_HEALTH_ADDRESS=${address}`).toBeDefined();
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: port!.name });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: port!.name });
  });
});

describe('the compiled entry points', () => {
  const config = testConfig();
  const cluster = new TestCluster(config.buildNamespace);
  const app = mkdtempSync(path.join(os.tmpdir(), 'runboat-image-'));
  const processes: ChildProcess[] = [];
  let port: number;

  /** `node <entry>` from the image's layout (/app: dist/, node_modules/, package.json). */
  const start = (entry: string, env: Record<string, string>) => {
    const log = createWriteStream(path.join(app, `${path.basename(path.dirname(entry))}.log`));
    const child = spawn(process.execPath, [entry], {
      cwd: app,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NODE_ENV: 'production',
        ...serviceEnv(config),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    processes.push(child);
    return child;
  };
  const exitOf = (child: ChildProcess) =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
  const url = (p: string) => `http://127.0.0.1:${port}${p}`;

  beforeAll(async () => {
    // As the Dockerfile's build stage: tsconfig.json on the folders of the build context (not
    // scripts/ nor test/, which .dockerignore leaves out), then deploy/dist-assets.sh.
    const tsconfig = path.join(app, 'tsconfig.json');
    writeFileSync(
      tsconfig,
      JSON.stringify({
        extends: path.join(root, 'tsconfig.json'),
        compilerOptions: { rootDir: root, outDir: path.join(app, 'dist') },
        include: ['common', 'workflows', 'activities', 'worker', 'api'].map((dir) => path.join(root, dir)),
      }),
    );
    await execFileAsync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', tsconfig], { cwd: root });
    await execFileAsync('sh', ['deploy/dist-assets.sh', path.join(app, 'dist')], { cwd: root });
    symlinkSync(path.join(root, 'node_modules'), path.join(app, 'node_modules'));
    // As the Dockerfile's build stage: the workflow code bundled once, into dist/.
    await execFileAsync(process.execPath, [path.join(app, 'dist', 'worker', 'bundle.js')], { cwd: app });
    writeFileSync(path.join(app, 'package.json'), read('package.json'));
    await cluster.createNamespace();
    port = await freePort();
  }, 170_000);

  let failed = false;
  afterEach(({ task }) => {
    if (task.result?.state === 'fail') failed = true;
  });

  afterAll(async () => {
    for (const child of processes) child.kill('SIGKILL');
    // The processes' logs are what explains a failure: kept, and said where, when one happened.
    if (failed) {
      const kept = mkdtempSync(path.join(os.tmpdir(), 'runboat-packaging-logs-'));
      for (const log of readdirSync(app).filter((file) => file.endsWith('.log')))
        copyFileSync(path.join(app, log), path.join(kept, log));
      console.warn(`the compiled entry points' logs are kept in ${kept}`);
    }
    rmSync(app, { recursive: true, force: true });
  });

  it('carries the kubefiles and the UI beside the compiled code', () => {
    expect(existsSync(path.join(app, 'dist', 'kubefiles', 'kustomization.yaml.jinja'))).toBe(true);
    expect(existsSync(path.join(app, 'dist', 'workflows', 'index.js'))).toBe(true);
    expect(existsSync(path.join(app, 'dist', 'workflow-bundle.js'))).toBe(true);
    if (existsSync(path.join(root, 'api', 'ui')))
      expect(existsSync(path.join(app, 'dist', 'api', 'ui', 'home.html'))).toBe(true);
  });

  it('run a build with no TypeScript and no source tree, and stop on SIGTERM', async () => {
    const workerHealth = await freePort();
    const worker = start('dist/worker/main.js', {
      RUNBOAT_WORKER_HEALTH_ADDRESS: `127.0.0.1:${workerHealth}`,
    });
    const api = start('dist/api/main.js', { PORT: String(port) });
    await waitFor('the API', async () => (await fetch(url('/healthz'))).ok);
    await waitFor('the API to be ready', async () => (await fetch(url('/readyz'))).ok);
    await waitFor(
      'the worker to be ready',
      async () => (await fetch(`http://127.0.0.1:${workerHealth}/readyz`)).ok,
      60_000,
    );
    if (existsSync(path.join(root, 'api', 'ui', 'home.html'))) {
      const home = await fetch(url('/'));
      expect(home.status).toBe(200);
      expect(home.headers.get('content-type')).toMatch(/text\/html/);
    }

    // The worker runs dist/workflow-bundle.js, renders dist/kubefiles with the kustomize renderer and applies them.
    const connection = await Connection.connect({ address: config.temporalAddress });
    try {
      const client = new Client({ connection, namespace: config.temporalNamespace });
      const build = await startBuild(client, config, {
        repo: 'OCA/mis-builder',
        target_branch: '16.0',
        pr: null,
        git_commit: SHA('d'),
      });
      const deployment = await waitFor('the Deployment', () => cluster.deployment(build.name), 60_000);
      expect(deployment.metadata?.name).toBe(`${build.name}-odoo`);
      const response = await fetch(url(`/api/v1/builds/${build.name}`));
      expect(response.status).toBe(200);
      expect(((await response.json()) as { name: string }).name).toBe(build.name);
      await client.workflow
        .getHandle(buildWorkflowId(build.name))
        .terminate('test over')
        .catch(() => undefined);
    } finally {
      await connection.close();
    }

    api.kill('SIGTERM');
    worker.kill('SIGTERM');
    expect(await exitOf(api)).toBe(0);
    expect(await exitOf(worker)).toBe(0);
    // The worker ran the workflows from the image's pre-built bundle, not from a bundle of its own,
    // once it had replayed the latest release's histories, shipped beside it, on that bundle.
    const workerLog = readFileSync(path.join(app, 'worker.log'), 'utf8');
    expect(workerLog).toContain('using the pre-built workflow bundle');
    expect(workerLog).toContain("the workflow code replays the latest release's recorded histories");
  });

  it('a worker whose bundle cannot run the builds exits 1, saying why, and is never ready', async () => {
    // An image with another buildWorkflow in its bundle: it loads and would poll, but it cannot
    // replay the builds the latest release started.
    const { code } = await bundleQuietly(path.join(__dirname, 'fixtures', 'workflows', 'continued-runs.ts'));
    const bundle = path.join(app, 'dist', 'workflow-bundle.js');
    const released = readFileSync(bundle, 'utf8');
    writeFileSync(bundle, code);
    onTestFinished(() => writeFileSync(bundle, released));
    const health = await freePort();
    const worker = start('dist/worker/main.js', { RUNBOAT_WORKER_HEALTH_ADDRESS: `127.0.0.1:${health}` });
    let exited = false;
    const exitCode = exitOf(worker).finally(() => (exited = true));
    const answers: number[] = [];
    // Until it exits, or says it is ready (which it must not).
    while (!exited && !answers.includes(200)) {
      const answer = await fetch(`http://127.0.0.1:${health}/readyz`).catch(() => undefined);
      if (answer) answers.push(answer.status);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(answers).not.toContain(200);
    expect(await exitCode).toBe(1);
    expect(readFileSync(path.join(app, 'worker.log'), 'utf8')).toMatch(
      /"level":60.*the workflow code cannot run release v\d+'s builds: replaying its recorded history [\w-]+ failed: .*[Nn]ondeterminism/,
    );
  }, 60_000);
});
