import type { KubernetesObject } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { KubefilesError, prepareKustomization, renderKubefiles } from '../activities/kubefiles';
import { KustomizeError, KustomizeRenderer } from '../activities/kustomize';
import { buildRef } from '../common/build';
import { loadConfig, type Config } from '../common/config';
import type { BuildRef, KubefilesMode } from '../common/types';
import { binary } from '../scripts/paths';
import { waitFor } from './helpers';

// The kustomize renderer (scripts/kustomize-renderer) against `kubectl kustomize`, whose output
// it replaces: the objects kubectl prints, in its order, for the project's kubefiles in every mode
// and for a kustomization using each kustomize feature runboat's kubefiles use (the renderer gives
// them as the JSON kustomize prints its YAML from); then the process's own behaviour.

const execFileAsync = promisify(execFile);
const FEATURES = path.join(__dirname, 'fixtures', 'kustomize-features');
const MODES: KubefilesMode[] = ['deployment', 'initialize', 'start', 'stop', 'cleanup'];

const renderer = new KustomizeRenderer(binary('kustomize-renderer'));
const scratch = mkdtempSync(path.join(os.tmpdir(), 'runboat-kustomize-test-'));
afterAll(async () => {
  await renderer.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** `kubectl kustomize dir`: its stdout, or its error message as the renderer gives it. */
async function kubectlKustomize(dir: string): Promise<string> {
  try {
    return (await execFileAsync(binary('kubectl'), ['kustomize', dir])).stdout;
  } catch (error) {
    const { stderr } = error as { stderr: string };
    throw new KustomizeError(stderr.replace(/^error: /, '').trim());
  }
}

/**
 * The kubefiles of a build's mode in a scratch copy, as runboat renders them for `kubectl
 * kustomize`: the directory copied, each template's output written in the copy in its place.
 * The worker's renderer lays the outputs over the directory instead (none written).
 */
async function scratchCopy(config: Config, build: BuildRef, mode: KubefilesMode): Promise<string> {
  const { dir, rendered, templates } = await prepareKustomization(config, build, mode);
  const copy = mkdtempSync(path.join(scratch, 'copy-'));
  // Links copied as the files they point to, as runboat's shutil.copytree does.
  cpSync(dir, copy, { recursive: true, dereference: true });
  for (const template of templates) rmSync(path.join(copy, template));
  for (const [file, content] of rendered) writeFileSync(path.join(copy, file), content);
  return copy;
}

/** The objects of a YAML stream, as the worker parsed `kubectl kustomize`'s output before. */
const parsed = (stream: string) => parseAllDocuments(stream).map((document) => document.toJS() as unknown);

describe('the kustomize renderer gives the objects `kubectl kustomize` prints', () => {
  const config = (templateVars: Record<string, unknown> = {}) =>
    loadConfig({
      RUNBOAT_BUILD_NAMESPACE: 'runboat-builds',
      RUNBOAT_BUILD_DOMAIN: 'runboat.example.com',
      RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
      RUNBOAT_BUILD_ENV: JSON.stringify({ PGHOST: 'postgres', WORKERS: 2 }),
      RUNBOAT_BUILD_SECRET_ENV: JSON.stringify({ PGPASSWORD: 'secret' }),
      RUNBOAT_REPOS: JSON.stringify([
        {
          repo: '^oca/',
          branch: '.*',
          builds: [{ image: 'ghcr.io/oca/oca-ci:16.0', template_vars: templateVars }],
        },
      ]),
    });
  const build = buildRef({
    repo: 'oca/mis-builder',
    target_branch: '16.0',
    pr: 42,
    git_commit: '0123456789abcdef0123456789abcdef01234567',
  });

  // The default kubefiles, plus the template variables that add patches.
  const variants = [
    ['', {}],
    [
      ' with storageClassName and simulate_init_failure',
      { storageClassName: 'fast', simulate_init_failure: 1 },
    ],
  ] as const;
  for (const [variant, templateVars] of variants) {
    it.each(MODES)(`for the default kubefiles in %s mode${variant}`, async (mode) => {
      const dir = await scratchCopy(config(templateVars), build, mode);
      try {
        const [expected, actual] = await Promise.all([
          kubectlKustomize(dir),
          renderKubefiles(config(templateVars), build, mode),
        ]);
        expect(actual).toEqual(parsed(expected));
        expect(actual.length).toBeGreaterThan(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('for a kustomization with each feature the kubefiles use', async () => {
    const [expected, actual] = await Promise.all([kubectlKustomize(FEATURES), renderer.build(FEATURES)]);
    expect(actual).toEqual(parsed(expected));

    // The features did act, so that the comparison above means something.
    const objects = actual as unknown as {
      kind: string;
      metadata: { name: string; labels: object; annotations: object };
      spec?: { selector?: unknown; replicas?: number; template?: { spec: { containers: object[] } } };
    }[];
    // Legacy order (ConfigMap, Secret, Service, PVC, Deployment, Job), not the listed one.
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      expect.stringMatching(/^ConfigMap\/build-1-env-[a-z0-9]{10}$/),
      expect.stringMatching(/^ConfigMap\/build-1-files-[a-z0-9]{10}$/),
      expect.stringMatching(/^ConfigMap\/build-1-fromenv-[a-z0-9]{10}$/),
      'Secret/build-1-fixed',
      expect.stringMatching(/^Secret\/build-1-secret-[a-z0-9]{10}$/),
      'Service/build-1-web',
      'PersistentVolumeClaim/build-1-data',
      'Deployment/build-1-web',
      'Job/build-1-initialize',
    ]);
    const [service, deployment] = [objects[5], objects[7]];
    expect(service.spec?.selector).toEqual({ app: 'web', legacy: 'yes', 'runboat/build': 'build-1' });
    expect(deployment.metadata.annotations).toMatchObject({ 'patched-by': 'json6902', 'runboat/pr': '' });
    expect(deployment.spec?.replicas).toBe(0);
    expect(JSON.stringify(deployment.spec?.template)).toContain(objects[0].metadata.name);
    expect(JSON.stringify(deployment.spec?.template)).toContain('ghcr.io/oca/oca-ci/py3.10-odoo16.0:2024.01');
    expect(JSON.stringify(deployment.spec?.template)).toContain('FROM_PATCH');
  });

  it('with no state carried from one render to the next (a custom OpenAPI schema)', async () => {
    // kustomize keeps the OpenAPI schema in globals: one process per render (kubectl) starts
    // clean each time; a long-lived one must not let one render's schema reach another.
    const custom = mkdtempSync(path.join(scratch, 'openapi-'));
    cpSync(FEATURES, custom, { recursive: true });
    writeFileSync(path.join(custom, 'schema.json'), '{"definitions": {}}');
    appendFileSync(path.join(custom, 'kustomization.yaml'), 'openapi:\n  path: schema.json\n');
    const [customExpected, expected] = await Promise.all([
      kubectlKustomize(custom),
      kubectlKustomize(FEATURES),
    ]);
    expect(parsed(customExpected)).not.toEqual(parsed(expected));
    // The built-in schema parsed first (warm), then the custom one, then the built-in again.
    expect(await renderer.build(FEATURES)).toEqual(parsed(expected));
    expect(await renderer.build(custom)).toEqual(parsed(customExpected));
    expect(await renderer.build(FEATURES)).toEqual(parsed(expected));
  });

  it.each([
    ['a missing resource', 'resources:\n  - missing.yaml\n'],
    ['a kustomization that is not YAML', 'resources: [\n'],
    ['an unknown field', 'resourcez:\n  - a.yaml\n'],
    // Not an error for kustomize: both build it, alike.
    [
      'a patch whose target is absent',
      'patches:\n  - target: {kind: Job}\n    patch: "- {op: remove, path: /x}"\n',
    ],
  ])('with the same outcome for %s', async (_, kustomization) => {
    const dir = mkdtempSync(path.join(scratch, 'bad-'));
    writeFileSync(path.join(dir, 'kustomization.yaml'), kustomization);
    const [expected, actual] = await Promise.allSettled([
      kubectlKustomize(dir).then(parsed),
      renderer.build(dir),
    ]);
    expect(actual).toEqual(expected);
  });

  it('and is built from the modules kubectl links, at their versions', async () => {
    const modules = async (file: string) => {
      const { stdout } = await execFileAsync('go', ['version', '-m', file]);
      return new Map(
        [...stdout.matchAll(/^\s+dep\s+(\S+)\s+(\S+)/gm)].map(([, name, version]) => [name, version]),
      );
    };
    const [ours, kubectl] = await Promise.all([
      modules(binary('kustomize-renderer')),
      modules(binary('kubectl')),
    ]);
    expect(ours.get('sigs.k8s.io/kustomize/api')).toBeDefined();
    for (const [name, version] of ours) expect(`${name}@${kubectl.get(name)}`).toBe(`${name}@${version}`);
  });
});

describe('renderKubefiles', () => {
  const kubefiles = (files: Record<string, string>) => {
    const dir = mkdtempSync(path.join(scratch, 'kubefiles-'));
    for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
    return loadConfig({
      RUNBOAT_BUILD_NAMESPACE: 'ns',
      RUNBOAT_BUILD_DOMAIN: 'example.com',
      RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
      RUNBOAT_REPOS: JSON.stringify([
        { repo: '.*', branch: '.*', builds: [{ image: 'odoo', kubefiles_path: dir }] },
      ]),
    });
  };
  const build = buildRef({ repo: 'oca/x', target_branch: '16.0', pr: 1, git_commit: 'a'.repeat(40) });

  // In a scratch copy (as runboat renders, and kubectl then builds) and laid over the directory
  // (as the worker's renderer builds), the same refusal; only the folders differ.
  it.each([
    ['a missing resource', { 'kustomization.yaml': 'resources:\n  - missing.yaml\n' }],
    [
      'a missing resource, from a template',
      { 'kustomization.yaml.jinja': 'resources:\n  - missing.yaml\n  - {{ build_name }}.yaml\n' },
    ],
    [
      'a template named as a resource (templates are not in the copy)',
      {
        'kustomization.yaml.jinja': 'resources:\n  - cm.yaml.jinja\n',
        'cm.yaml.jinja': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n',
      },
    ],
    [
      'a template named in a generator',
      {
        'kustomization.yaml.jinja': 'configMapGenerator:\n  - name: x\n    files: [env.jinja]\n',
        'env.jinja': 'A=1\n',
      },
    ],
  ])('turns kustomize errors into a KubefilesError with kustomize’s message: %s', async (_, files) => {
    const config = kubefiles(files);
    const error = await renderKubefiles(config, build, 'deployment').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubefilesError);
    const copy = await scratchCopy(config, build, 'deployment');
    const message = await kubectlKustomize(copy).then(
      () => 'no error',
      (e: Error) => e.message,
    );
    const folderless = (text: string) => text.replaceAll(/\/[^\s':]*\/(kubefiles|copy)-[^/\s':]*/g, '<dir>');
    expect(folderless((error as Error).message)).toBe(folderless(`kustomize failed: ${message}`));
    expect(message).not.toBe('no error');
  });

  it('renders kubefiles mounted from a ConfigMap, whose files are links into a hidden folder', async () => {
    const config = kubefiles({});
    const { dir } = await prepareKustomization(config, build, 'deployment');
    // As the kubelet lays out a ConfigMap volume: ..data -> ..<timestamp>/, x -> ..data/x.
    const files = path.join(dir, '..2026_12_04_00_00_00.1');
    mkdirSync(files);
    writeFileSync(
      path.join(files, 'kustomization.yaml.jinja'),
      'resources: [cm.yaml]\nnamePrefix: {{ build_name }}-\n',
    );
    writeFileSync(path.join(files, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n');
    symlinkSync('..2026_12_04_00_00_00.1', path.join(dir, '..data'));
    for (const name of ['kustomization.yaml.jinja', 'cm.yaml'])
      symlinkSync(`..data/${name}`, path.join(dir, name));
    const objects = await renderKubefiles(config, build, 'deployment');
    expect(objects).toEqual(parsed(await kubectlKustomize(await scratchCopy(config, build, 'deployment'))));
    expect(objects.map((o) => o.metadata?.name)).toEqual([`${build.name}-cm`]);
  });

  it('builds what the scratch copy builds, templates in subfolders included', async () => {
    const config = kubefiles({
      'kustomization.yaml.jinja': 'resources:\n  - base\nnamePrefix: {{ build_name }}-\n',
    });
    const { dir } = await prepareKustomization(config, build, 'deployment');
    mkdirSync(path.join(dir, 'base'));
    writeFileSync(path.join(dir, 'base', 'kustomization.yaml'), 'resources: [cm.yaml]\n');
    writeFileSync(
      path.join(dir, 'base', 'cm.yaml.jinja'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  mode: {{ mode }}\n',
    );
    const copy = await scratchCopy(config, build, 'deployment');
    const objects = await renderKubefiles(config, build, 'deployment');
    expect(objects).toEqual(parsed(await kubectlKustomize(copy)));
    expect(objects).toEqual([expect.objectContaining({ data: { mode: 'deployment' } })]);
  });
});

describe('KustomizeRenderer', () => {
  const dirWith = (name: string) => {
    const dir = mkdtempSync(path.join(scratch, `${name}-`));
    writeFileSync(
      path.join(dir, 'kustomization.yaml'),
      `configMapGenerator:\n  - name: ${name}\n    literals: [a=b]\n`,
    );
    return dir;
  };
  const nameIn = (objects: KubernetesObject[]) => objects[0]?.metadata?.name;

  it('answers concurrent requests, each with its own result, from one process', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `c${i}`);
    const dirs = names.map(dirWith);
    const results = await Promise.all(dirs.map((dir) => renderer.build(dir)));
    expect(results.map(nameIn)).toEqual(names.map((name) => expect.stringMatching(new RegExp(`^${name}-`))));
    const pid = renderer.pid;
    await renderer.build(dirs[0]);
    expect(renderer.pid).toBe(pid);
  });

  it('starts another process when it dies, and resends the requests it held', async () => {
    const names = ['r0', 'r1', 'r2', 'r3'];
    const dirs = names.map(dirWith);
    await renderer.build(dirs[0]);
    const first = renderer.pid!;
    // Killed with four requests written and none answered (answers need the event loop).
    const results = Promise.all(dirs.map((dir) => renderer.build(dir)));
    process.kill(first, 'SIGKILL');
    expect((await results).map(nameIn)).toEqual(
      names.map((name) => expect.stringMatching(new RegExp(`^${name}-`))),
    );
    await renderer.build(dirs[0]);
    expect(renderer.pid).not.toBe(first);
  });

  it('warms up: the process runs, and the next build is answered by it', async () => {
    const own = new KustomizeRenderer(binary('kustomize-renderer'));
    expect(own.pid).toBeUndefined();
    await own.warmUp();
    const pid = own.pid;
    expect(pid).toBeDefined();
    expect(nameIn(await own.build(dirWith('warm')))).toMatch(/^warm-/);
    expect(own.pid).toBe(pid);
    await own.close();
  });

  it('stops its process on close, and starts one again on the next build', async () => {
    const own = new KustomizeRenderer(binary('kustomize-renderer'));
    const dir = dirWith('closing');
    await own.build(dir);
    const pid = own.pid!;
    await own.close();
    expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    expect(nameIn(await own.build(dir))).toMatch(/^closing-/);
    expect(own.pid).not.toBe(pid);
    await own.close();
  });

  it('fails a request with no answer in time, and kills the process that hangs', async () => {
    const hanging = path.join(scratch, 'hanging.sh');
    writeFileSync(hanging, '#!/bin/sh\nexec sleep 600\n');
    chmodSync(hanging, 0o755);
    const own = new KustomizeRenderer(hanging, 300);
    const build = own.build(dirWith('hang'));
    const pid = own.pid!;
    await expect(build).rejects.toThrow(KustomizeError);
    await expect(build).rejects.toThrow(/no result after 0.3 s/);
    await waitFor('the hanging renderer to be killed', async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await own.close();
  });

  it('answers an empty kustomization with no objects, and refuses an older renderer’s answer', async () => {
    const empty = mkdtempSync(path.join(scratch, 'empty-'));
    writeFileSync(path.join(empty, 'kustomization.yaml'), 'resources: []\n');
    expect(await renderer.build(empty)).toEqual([]);

    // Before JSON answers, the renderer sent the YAML text: taken as no objects, a build would
    // have applied nothing and gone on.
    const older = path.join(scratch, 'older-renderer.sh');
    writeFileSync(
      older,
      `#!/bin/sh\nwhile IFS= read -r line; do\n  id=$(printf '%s' "$line" | sed 's/^{"id":\\([0-9]*\\).*/\\1/')\n  printf '{"id":%s,"yaml":"kind: ConfigMap\\\\n"}\\n' "$id"\ndone\n`,
    );
    chmodSync(older, 0o755);
    const own = new KustomizeRenderer(older);
    await expect(own.build(empty)).rejects.toThrow(/answered without objects: it predates this worker/);
    await own.close();
  });

  it('says where the binary should be when it is missing', async () => {
    const missing = new KustomizeRenderer(path.join(scratch, 'no-such-renderer'));
    await expect(missing.build(scratch)).rejects.toThrow(
      /not found at .*no-such-renderer.*RUNBOAT_KUSTOMIZE_RENDERER/,
    );
  });

  it('exits with its input, so that it never outlives the worker', async () => {
    // A worker killed with SIGKILL closes the renderer's stdin: the renderer must exit.
    const { stdout } = await execFileAsync('sh', [
      '-c',
      `printf '{"id":7,"dir":"%s"}\\n' "$1" | "$0"`,
      binary('kustomize-renderer'),
      FEATURES,
    ]);
    expect(JSON.parse(stdout)).toEqual({ id: 7, objects: parsed(await kubectlKustomize(FEATURES)) });
  });
});
