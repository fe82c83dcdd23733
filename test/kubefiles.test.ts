import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type {
  KubernetesObject,
  V1ConfigMap,
  V1Deployment,
  V1Ingress,
  V1Job,
  V1Secret,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildValues, createActivities, markAttempt } from '../activities';
import { KubefilesError, renderKubefiles, splitImage } from '../activities/kubefiles';
import { KustomizeRenderer } from '../activities/kustomize';
import { objectShape, type BuildCluster } from '../common/kubernetes';
import { UnsafeCommitInfoError, buildRef } from '../common/build';
import { captureRepoSettings, loadConfig, type Config } from '../common/config';
import type { BuildRef, CommitInfo } from '../common/types';
import { binary } from '../scripts/paths';
import { DEFAULT_DEPLOYMENT_OBJECTS } from './helpers';

// Renders kubefiles directories with the kustomize renderer (test/kustomize.test.ts compares it
// with `kubectl kustomize`); no cluster involved (the worker's applies are recorded).

const FIXTURE = path.join(__dirname, 'fixtures', 'runboat-kubefiles');
const SHA = '0123456789abcdef0123456789abcdef01234567';

type Env = Record<string, string>;

function config(repos: unknown[], env: Env = {}): Config {
  return loadConfig({
    RUNBOAT_BUILD_NAMESPACE: 'runboat-builds',
    RUNBOAT_BUILD_DOMAIN: 'runboat.example.com',
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    RUNBOAT_REPOS: JSON.stringify(repos),
    ...env,
  });
}

const ocaRepo = (build: Record<string, unknown> = {}) => ({
  repo: '^oca/',
  branch: '^1[0-9]\\.0$',
  builds: [{ image: 'ghcr.io/oca/oca-ci:16.0', ...build }],
});

const commit = (overrides: Partial<CommitInfo> = {}): CommitInfo => ({
  repo: 'OCA/mis-builder',
  target_branch: '16.0',
  pr: 42,
  git_commit: SHA,
  ...overrides,
});

const ofKind = <T extends KubernetesObject>(objects: KubernetesObject[], kind: string): T[] =>
  objects.filter((object) => object.kind === kind) as T[];

const named = <T extends KubernetesObject>(objects: KubernetesObject[], kind: string, name: string): T => {
  const found = ofKind<T>(objects, kind).filter((object) => object.metadata?.name === name);
  expect(found, `${kind} ${name} among ${describeObjects(objects)}`).toHaveLength(1);
  return found[0];
};

const describeObjects = (objects: KubernetesObject[]) =>
  objects.map((object) => `${object.kind}/${object.metadata?.name}`).join(', ');

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(
    Object.entries(data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString()]),
  );

const scratchDirs: string[] = [];
function scratchDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'runboat-kubefiles-test-'));
  scratchDirs.push(dir);
  return dir;
}
afterAll(() => scratchDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

describe('splitImage', () => {
  it.each([
    ['ghcr.io/x/y:16.0', ['ghcr.io/x/y', '16.0']],
    ['registry:5000/a/b', ['registry:5000/a/b', 'latest']],
    ['registry:5000/a/b:17.0-dev', ['registry:5000/a/b', '17.0-dev']],
    ['odoo', ['odoo', 'latest']],
    ['odoo:16', ['odoo', '16']],
    ['ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest', ['ghcr.io/oca/oca-ci/py3.10-odoo16.0', 'latest']],
  ])('splits %s', (image, expected) => {
    expect(splitImage(image)).toEqual(expected);
  });
});

describe('renderKubefiles with the default kubefiles', () => {
  const env: Env = {
    RUNBOAT_BUILD_ENV: JSON.stringify({ PGHOST: 'postgres', PGUSER: 'global-user', LOG_LEVEL: 'info' }),
    RUNBOAT_BUILD_SECRET_ENV: JSON.stringify({ PGPASSWORD: 'global-secret', ADMIN_PASSWD: 'admin' }),
  };
  const cfg = config(
    [
      ocaRepo({
        image: 'ghcr.io/oca/oca-ci/py3.10-odoo16.0:2024.01',
        env: { PGUSER: 'oca-user', WORKERS: 2 },
        secret_env: { PGPASSWORD: 'oca-secret' },
      }),
    ],
    env,
  );
  const build = buildRef(commit());
  let objects: KubernetesObject[];

  beforeAll(async () => {
    objects = await renderKubefiles(cfg, build, 'deployment');
  });

  it("differs from another build's of the repo and branch only by the build's values", async () => {
    // What lets a new build skip the dry run of objects another build had accepted (apply).
    const other = buildRef(commit({ pr: 57, git_commit: 'fedcba9876543210fedcba9876543210fedcba98' }));
    const longerPr = buildRef(commit({ pr: 420 }));
    for (const mode of ['deployment', 'initialize', 'start', 'stop'] as const) {
      const [mine, theirs, longer] = await Promise.all(
        [build, other, longerPr].map((ref) => renderKubefiles(cfg, ref, mode)),
      );
      const shapes = (ref: BuildRef, rendered: KubernetesObject[]) =>
        rendered.map((object) => objectShape(object, buildValues(ref, rendered)));
      expect(JSON.stringify(theirs)).not.toBe(JSON.stringify(mine));
      expect(shapes(other, theirs), mode).toEqual(shapes(build, mine));
      // Values of other lengths may be refused where these were not (a name too long).
      expect(shapes(longerPr, longer), mode).not.toEqual(shapes(build, mine));
    }
  });

  it("differs from another build's init Job only by the build's values and the Job's attempt", async () => {
    const other = buildRef(commit({ pr: 57, git_commit: 'fedcba9876543210fedcba9876543210fedcba98' }));
    // Attempts as the workflow names them: its run id and the slot request's number.
    const attempts = ['0b9c2d4e-1f3a-4b5c-8d7e-6f5a4b3c2d1e/1', 'f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b/1'];
    const [mine, theirs] = await Promise.all(
      [build, other].map(async (ref, i) =>
        (await renderKubefiles(cfg, ref, 'initialize')).map((object) => markAttempt(object, attempts[i])),
      ),
    );
    const job = (rendered: KubernetesObject[]) => rendered.find((object) => object.kind === 'Job');
    expect(job(mine)?.metadata?.annotations).toMatchObject({ 'runboat/init-attempt': attempts[0] });
    const shapes = (ref: BuildRef, rendered: KubernetesObject[], attempt: string) =>
      rendered.map((object) => objectShape(object, buildValues(ref, rendered, attempt)));
    expect(shapes(other, theirs, attempts[1])).toEqual(shapes(build, mine, attempts[0]));
  });

  it('yields exactly the objects of a deployment', () => {
    const kinds = objects.map((object) => `${object.kind}/${object.metadata?.name}`).sort();
    expect(kinds).toEqual(
      DEFAULT_DEPLOYMENT_OBJECTS.map((kindName) => kindName.replace('/', `/${build.name}-`)).sort(),
    );
  });

  it('labels, names, namespaces and annotates every object for the build', () => {
    expect(build.name).toMatch(/^oca-mis-builder-16-0-pr42-0123456789ab-[0-9a-f]{10}$/);
    for (const object of objects) {
      const where = `${object.kind}/${object.metadata?.name}`;
      expect(object.metadata?.labels?.['runboat/build'], where).toBe(build.name);
      expect(object.metadata?.name?.startsWith(`${build.name}-`), where).toBe(true);
      expect(object.metadata?.namespace, where).toBe('runboat-builds');
      expect(object.metadata?.annotations, where).toMatchObject({
        'runboat/repo': 'oca/mis-builder',
        'runboat/target-branch': '16.0',
        'runboat/pr': '42',
        'runboat/git-commit': SHA,
      });
    }
  });

  it('deploys the Deployment idle, waiting for its initialization', () => {
    const deployment = named<V1Deployment>(objects, 'Deployment', `${build.name}-odoo`);
    expect(deployment.spec?.replicas).toBe(0);
    expect(deployment.metadata?.annotations?.['runboat/init-status']).toBe('todo');
    expect(deployment.spec?.template.metadata?.labels?.['runboat/build']).toBe(build.name);
    const odoo = deployment.spec?.template.spec?.containers.find((container) => container.name === 'odoo');
    expect(odoo?.image).toBe('ghcr.io/oca/oca-ci/py3.10-odoo16.0:2024.01');
  });

  it('refers to the build-prefixed ConfigMaps, Secret and PVC from the Deployment', () => {
    const deployment = named<V1Deployment>(objects, 'Deployment', `${build.name}-odoo`);
    const pod = deployment.spec?.template.spec;
    const odoo = pod?.containers.find((container) => container.name === 'odoo');
    expect(odoo?.envFrom).toEqual([
      { secretRef: { name: `${build.name}-odoosecretenv` } },
      { configMapRef: { name: `${build.name}-odooenv` } },
    ]);
    expect(pod?.volumes).toEqual([
      { name: 'runboat-scripts', configMap: { name: `${build.name}-runboat-scripts` } },
      { name: 'data', persistentVolumeClaim: { claimName: `${build.name}-data` } },
    ]);
  });

  it("has the Service and the Deployment select only this build's pods", () => {
    // Builds share a namespace: a selector of `app: odoo` alone would send one build's
    // traffic to every started build (runboat's kubefiles used commonLabels for this).
    const deployment = named<V1Deployment>(objects, 'Deployment', `${build.name}-odoo`);
    const service = named<KubernetesObject & { spec?: { selector?: Record<string, string> } }>(
      objects,
      'Service',
      `${build.name}-odoo`,
    );
    expect(service.spec?.selector?.['runboat/build']).toBe(build.name);
    expect(deployment.spec?.selector.matchLabels?.['runboat/build']).toBe(build.name);
  });

  it('routes <slug>.<domain> and <slug>.mail.<domain> (as runboat links them) to the build Service', () => {
    const hostOf = (name: string) =>
      named<V1Ingress>(objects, 'Ingress', `${build.name}-${name}`).spec?.rules?.[0];
    expect(build.slug).toBe('oca-mis-builder-16-0-pr42-0123456789ab');
    expect(hostOf('odoo')?.host).toBe('oca-mis-builder-16-0-pr42-0123456789ab.runboat.example.com');
    expect(hostOf('mailhog')?.host).toBe('oca-mis-builder-16-0-pr42-0123456789ab.mail.runboat.example.com');
    expect(hostOf('odoo')?.http?.paths[0].backend.service).toEqual({
      name: `${build.name}-odoo`,
      port: { name: 'web' },
    });
    expect(hostOf('mailhog')?.http?.paths[0].backend.service).toEqual({
      name: `${build.name}-odoo`,
      port: { name: 'mailhog' },
    });
  });

  it('merges the global build env with the repo build env, the repo entry winning', () => {
    const odooenv = named<V1ConfigMap>(objects, 'ConfigMap', `${build.name}-odooenv`);
    expect(odooenv.data).toEqual({
      PGDATABASE: build.name,
      ADDONS_DIR: '/mnt/data/addons',
      RUNBOAT_GIT_REPO: 'https://github.com/oca/mis-builder',
      RUNBOAT_GIT_REF: SHA,
      PGHOST: 'postgres',
      PGUSER: 'oca-user',
      LOG_LEVEL: 'info',
      WORKERS: '2',
    });
  });

  it('puts the merged secret env in the Secret only', () => {
    const secret = named<V1Secret>(objects, 'Secret', `${build.name}-odoosecretenv`);
    expect(decode(secret.data)).toEqual({ PGPASSWORD: 'oca-secret', ADMIN_PASSWD: 'admin' });
    const everythingElse = JSON.stringify(objects.filter((object) => object.kind !== 'Secret'));
    expect(everythingElse).not.toContain('oca-secret');
    expect(everythingElse).not.toContain('global-secret');
  });

  it('ships the runboat scripts in a ConfigMap', () => {
    const scripts = named<V1ConfigMap>(objects, 'ConfigMap', `${build.name}-runboat-scripts`);
    expect(Object.keys(scripts.data ?? {}).sort()).toEqual([
      'runboat-cleanup.sh',
      'runboat-initialize.sh',
      'runboat-start.sh',
    ]);
    expect(scripts.data?.['runboat-cleanup.sh']).toContain('dropdb');
  });

  it('annotates a branch build with an empty pr', async () => {
    const branchBuild = buildRef(commit({ pr: null }));
    const rendered = await renderKubefiles(cfg, branchBuild, 'deployment');
    expect(branchBuild.name).not.toBe(build.name);
    for (const object of rendered) {
      expect(object.metadata?.annotations?.['runboat/pr']).toBe('');
      expect(object.metadata?.labels?.['runboat/build']).toBe(branchBuild.name);
    }
    const host = named<V1Ingress>(rendered, 'Ingress', `${branchBuild.name}-odoo`).spec?.rules?.[0].host;
    expect(host).toBe('oca-mis-builder-16-0-0123456789ab.runboat.example.com');
  });

  it('yields the initialize Job, labelled on the job and its pod template', async () => {
    const rendered = await renderKubefiles(cfg, build, 'initialize');
    const jobs = ofKind<V1Job>(rendered, 'Job');
    expect(jobs).toHaveLength(1);
    const [job] = jobs;
    expect(job.metadata?.name).toBe(`${build.name}-initialize`);
    expect(job.metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'initialize',
    });
    expect(job.spec?.template.metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'initialize',
    });
    expect(job.spec?.template.spec?.containers[0].image).toBe('ghcr.io/oca/oca-ci/py3.10-odoo16.0:2024.01');
    expect(ofKind(rendered, 'Deployment')).toEqual([]);
    expect(ofKind(rendered, 'Ingress')).toEqual([]);
  });

  it('has the initialize Job mount the PVC that the deployment mode creates', async () => {
    const rendered = await renderKubefiles(cfg, build, 'initialize');
    const [job] = ofKind<V1Job>(rendered, 'Job');
    const pvc = named(objects, 'PersistentVolumeClaim', `${build.name}-data`);
    const data = job.spec?.template.spec?.volumes?.find((volume) => volume.name === 'data');
    expect(data?.persistentVolumeClaim?.claimName).toBe(pvc.metadata?.name);
  });

  it('yields the cleanup Job with job-kind cleanup', async () => {
    const rendered = await renderKubefiles(cfg, build, 'cleanup');
    const jobs = ofKind<V1Job>(rendered, 'Job');
    expect(jobs.map((job) => job.metadata?.name)).toEqual([`${build.name}-cleanup`]);
    expect(jobs[0].metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'cleanup',
    });
    expect(jobs[0].spec?.template.metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'cleanup',
    });
    expect(jobs[0].spec?.template.spec?.containers[0].image).toBe(
      'ghcr.io/oca/oca-ci/py3.10-odoo16.0:2024.01',
    );
  });

  it.each(['start', 'stop'] as const)('yields no workload in %s mode', async (mode) => {
    const rendered = await renderKubefiles(cfg, build, mode);
    expect(rendered.filter((object) => ['Deployment', 'Job', 'Ingress'].includes(object.kind ?? ''))).toEqual(
      [],
    );
    for (const object of rendered) expect(object.metadata?.labels?.['runboat/build']).toBe(build.name);
  });

  it('splits an image without a tag into name and latest', async () => {
    const untagged = config([ocaRepo({ image: 'registry:5000/oca/odoo' })]);
    const rendered = await renderKubefiles(untagged, build, 'deployment');
    const deployment = named<V1Deployment>(rendered, 'Deployment', `${build.name}-odoo`);
    expect(deployment.spec?.template.spec?.containers[0].image).toBe('registry:5000/oca/odoo:latest');
  });

  it('sets the PVC storageClassName from build_template_vars', async () => {
    const storageClassOf = async (cfg: Config) => {
      const rendered = await renderKubefiles(cfg, build, 'deployment');
      return named<KubernetesObject & { spec?: { storageClassName?: string } }>(
        rendered,
        'PersistentVolumeClaim',
        `${build.name}-data`,
      ).spec?.storageClassName;
    };
    expect(await storageClassOf(cfg)).toBeUndefined();
    expect(await storageClassOf(config([ocaRepo({ template_vars: { storageClassName: 'fast-ssd' } })]))).toBe(
      'fast-ssd',
    );
    const globalVars = { RUNBOAT_BUILD_TEMPLATE_VARS: JSON.stringify({ storageClassName: 'standard' }) };
    expect(await storageClassOf(config([ocaRepo()], globalVars))).toBe('standard');
    expect(
      await storageClassOf(
        config([ocaRepo({ template_vars: { storageClassName: 'fast-ssd' } })], globalVars),
      ),
    ).toBe('fast-ssd');
  });

  it('uses RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH when the repo entry has no kubefiles_path', async () => {
    const cfg = config([ocaRepo()], { RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH: FIXTURE });
    const rendered = await renderKubefiles(cfg, build, 'deployment');
    expect(ofKind(rendered, 'ConfigMap').map((object) => object.metadata?.name)).toContain(
      `${build.name}-odooconf`,
    );
  });
});

describe('renderKubefiles with a runboat-format kubefiles directory', () => {
  const cfg = config(
    [
      ocaRepo({
        image: 'ghcr.io/oca/oca-ci:15.0',
        kubefiles_path: FIXTURE,
        env: { PGUSER: 'repo-user', EXTRA: 'yes' },
        template_vars: { flavour: 'community', workers: 0 },
      }),
    ],
    { RUNBOAT_BUILD_ENV: JSON.stringify({ PGHOST: 'db', PGUSER: 'global' }) },
  );
  const build = buildRef(commit({ target_branch: '15.0', pr: 7 }));

  it('renders every *.jinja file with Jinja semantics and builds it with kustomize', async () => {
    const objects = await renderKubefiles(cfg, build, 'deployment');
    expect(describeObjects(objects).split(', ').sort()).toEqual(
      [
        `ConfigMap/${build.name}-odooconf`,
        `ConfigMap/${build.name}-odooenv`,
        `Deployment/${build.name}-odoo`,
      ].sort(),
    );
    for (const object of objects) {
      expect(object.metadata?.labels?.['runboat/build']).toBe(build.name);
      expect(object.metadata?.namespace).toBe('runboat-builds');
      expect(object.metadata?.annotations).toEqual({
        ...(object.kind === 'Deployment' ? { 'runboat/init-status': 'todo' } : {}),
        'runboat/repo': 'oca/mis-builder',
        'runboat/target-branch': '15.0',
        'runboat/pr': '7',
        'runboat/git-commit': SHA,
        'fixture/mode': 'deployment',
        'fixture/flavour': 'community',
      });
    }
    const env = named<V1ConfigMap>(objects, 'ConfigMap', `${build.name}-odooenv`);
    expect(env.data).toEqual({ PGDATABASE: build.name, PGHOST: 'db', PGUSER: 'repo-user', EXTRA: 'yes' });
    const conf = named<V1ConfigMap>(objects, 'ConfigMap', `${build.name}-odooconf`);
    expect(conf.data?.['odoo.conf']).toBe(
      `[options]\nflavour = community\nworkers = 0\ndb_name = ${build.name}\n`,
    );
    const deployment = named<V1Deployment>(objects, 'Deployment', `${build.name}-odoo`);
    expect(deployment.spec?.replicas).toBe(0);
    expect(deployment.spec?.template.spec?.containers[0].image).toBe('ghcr.io/oca/oca-ci:15.0');
    expect(deployment.spec?.template.spec?.containers[0].envFrom).toEqual([
      { configMapRef: { name: `${build.name}-odooenv` } },
    ]);
  });

  it('renders the mode conditionals', async () => {
    const objects = await renderKubefiles(cfg, build, 'initialize');
    const [job] = ofKind<V1Job>(objects, 'Job');
    expect(ofKind(objects, 'Deployment')).toEqual([]);
    expect(job.metadata?.name).toBe(`${build.name}-initialize`);
    expect(job.metadata?.annotations?.['fixture/mode']).toBe('initialize');
    expect(job.spec?.template.metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'initialize',
    });
  });

  it("renders an empty pr for a branch build (Jinja's `x if x else ''`)", async () => {
    const branchBuild = buildRef(commit({ target_branch: '15.0', pr: null }));
    const objects = await renderKubefiles(cfg, branchBuild, 'stop');
    expect(objects.length).toBeGreaterThan(0);
    for (const object of objects) expect(object.metadata?.annotations?.['runboat/pr']).toBe('');
  });

  it('renders a copy, leaving the kubefiles directory untouched', async () => {
    await renderKubefiles(cfg, build, 'deployment');
    expect(readdirSync(FIXTURE).sort()).toEqual([
      'deployment.yaml',
      'initialize.yaml',
      'kustomization.yaml.jinja',
      'odoo.conf.jinja',
    ]);
  });
});

describe('renderKubefiles with the repo settings a build was created with', () => {
  const created = captureRepoSettings(
    config([
      ocaRepo({ image: 'ghcr.io/oca/created:16.0', env: { WORKERS: 3 }, secret_env: { PGPASSWORD: 'x' } }),
    ]).repos[0],
  );
  const build = buildRef(commit());

  it('carries no secret into the workflow input', () => {
    expect(created).toEqual({ image: 'ghcr.io/oca/created:16.0', env: { WORKERS: '3' }, template_vars: {} });
  });

  it("renders with them, whatever the worker's RUNBOAT_REPOS says now", async () => {
    const secretEnv = { RUNBOAT_BUILD_SECRET_ENV: JSON.stringify({ ADMIN_PASSWD: 'global' }) };
    for (const repos of [[], [ocaRepo({ image: 'ghcr.io/oca/changed:16.0', env: { WORKERS: 1 } })]]) {
      const objects = await renderKubefiles(config(repos, secretEnv), build, 'deployment', created);
      const deployment = named<V1Deployment>(objects, 'Deployment', `${build.name}-odoo`);
      expect(deployment.spec?.template.spec?.containers[0].image).toBe('ghcr.io/oca/created:16.0');
      const env = named<V1ConfigMap>(objects, 'ConfigMap', `${build.name}-odooenv`);
      expect(env.data?.WORKERS).toBe('3');
      // Secrets are the worker's: the global ones, and the entry's while it is configured.
      const secret = named<V1Secret>(objects, 'Secret', `${build.name}-odoosecretenv`);
      expect(decode(secret.data).ADMIN_PASSWD).toBe('global');
    }
  });

  it('refuses, saying so, when the kubefiles path it was created with is gone', async () => {
    const gone = path.join(scratchDir(), 'removed-kubefiles');
    await expect(
      renderKubefiles(config([]), build, 'deployment', { ...created, kubefiles_path: gone }),
    ).rejects.toThrow(new KubefilesError(`kubefiles path ${gone} is gone`));
  });
});

describe('renderKubefiles refuses', () => {
  const cfg = config([
    // Permissive patterns: the commit's own validation, not the repo patterns, must stop these.
    { repo: '.*', branch: '.*', builds: [{ image: 'odoo:16.0' }] },
  ]);
  const forged = (overrides: Partial<CommitInfo>): BuildRef => {
    const safe = buildRef(commit());
    return { ...safe, commit: { ...safe.commit, ...overrides } };
  };

  it.each([
    { target_branch: '16.0"\n  evil: true' },
    { target_branch: '16.0\n  evil: true' },
    { repo: 'oca/x"\nevil: true' },
    { repo: 'oca/$(id)' },
    { git_commit: `${SHA.slice(0, 39)}"` },
    { pr: 0 },
  ])('a BuildRef with an unsafe commit %j', async (overrides) => {
    await expect(renderKubefiles(cfg, forged(overrides), 'deployment')).rejects.toBeInstanceOf(
      UnsafeCommitInfoError,
    );
  });

  it.each([{ slug: 'evil.attacker.example#' }, { name: 'other-build' }])(
    'a BuildRef whose %j does not match its commit',
    async (overrides) => {
      const ref = { ...buildRef(commit()), ...overrides };
      await expect(renderKubefiles(cfg, ref, 'deployment')).rejects.toThrow(/does not match its commit/);
    },
  );

  it('a repo that matches no RUNBOAT_REPOS entry', async () => {
    const strict = config([ocaRepo()]);
    const other = buildRef(commit({ repo: 'acme/odoo' }));
    await expect(renderKubefiles(strict, other, 'deployment')).rejects.toBeInstanceOf(KubefilesError);
    await expect(renderKubefiles(strict, other, 'deployment')).rejects.toThrow(
      /acme\/odoo 16\.0 matches no RUNBOAT_REPOS/,
    );
    const otherBranch = buildRef(commit({ target_branch: 'main' }));
    await expect(renderKubefiles(strict, otherBranch, 'deployment')).rejects.toBeInstanceOf(KubefilesError);
  });

  it('a template with a syntax error, naming the file', async () => {
    const dir = scratchDir();
    cpSync(FIXTURE, dir, { recursive: true });
    writeFileSync(path.join(dir, 'broken.yaml.jinja'), 'a: {% if mode == "deployment" %}\nb: 1\n');
    const error = await renderKubefiles(
      config([ocaRepo({ kubefiles_path: dir })]),
      buildRef(commit()),
      'deployment',
    ).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(error).toBeInstanceOf(KubefilesError);
    expect((error as Error).message).toContain('broken.yaml.jinja');
    // Nothing is rendered in place.
    expect(existsSync(path.join(dir, 'kustomization.yaml'))).toBe(false);
  });

  it('an invalid kustomization', async () => {
    const dir = scratchDir();
    writeFileSync(path.join(dir, 'kustomization.yaml'), 'resources:\n  - missing.yaml\n');
    const render = renderKubefiles(
      config([ocaRepo({ kubefiles_path: dir })]),
      buildRef(commit()),
      'deployment',
    );
    await expect(render).rejects.toBeInstanceOf(KubefilesError);
    await expect(render).rejects.toThrow(/kustomize failed: .*missing\.yaml/s);
  });

  it('a kustomization that is not YAML', async () => {
    const dir = scratchDir();
    writeFileSync(path.join(dir, 'kustomization.yaml.jinja'), 'resources: [\n  - {{ build_name }}\n');
    const render = renderKubefiles(
      config([ocaRepo({ kubefiles_path: dir })]),
      buildRef(commit()),
      'deployment',
    );
    await expect(render).rejects.toBeInstanceOf(KubefilesError);
  });
});

describe('wake on visit in the default kubefiles', () => {
  const annotationsOf = async (templateVars: Record<string, unknown>) => {
    const cfg = config([ocaRepo()], { RUNBOAT_BUILD_TEMPLATE_VARS: JSON.stringify(templateVars) });
    const build = buildRef(commit());
    const objects = await renderKubefiles(cfg, build, 'deployment');
    return ofKind<V1Ingress>(objects, 'Ingress').map((ingress) => ingress.metadata?.annotations ?? {});
  };

  it("sends both hosts' 503s (no ready pod) to the runboat-wake Service by default", async () => {
    const annotations = await annotationsOf({});
    expect(annotations).toHaveLength(2);
    for (const each of annotations) {
      expect(each).toMatchObject({
        'nginx.ingress.kubernetes.io/default-backend': 'runboat-wake',
        'nginx.ingress.kubernetes.io/custom-http-errors': '503',
        // The build's own annotations stay.
        'runboat/repo': 'oca/mis-builder',
      });
    }
  });

  it('names the Service from the wake_service template var, or leaves the annotations out', async () => {
    for (const each of await annotationsOf({ wake_service: 'my-wake' })) {
      expect(each['nginx.ingress.kubernetes.io/default-backend']).toBe('my-wake');
    }
    for (const each of await annotationsOf({ wake_service: '' })) {
      expect(Object.keys(each).filter((key) => key.startsWith('nginx.'))).toEqual([]);
    }
  });
});

describe('renderKubefiles with templates in folders', () => {
  it('renders them in place, and leaves no scratch folder behind', async () => {
    const dir = scratchDir();
    mkdirSync(path.join(dir, 'base', 'env'), { recursive: true });
    writeFileSync(path.join(dir, 'kustomization.yaml'), 'resources:\n  - base\n');
    writeFileSync(path.join(dir, 'base', 'kustomization.yaml'), 'resources:\n  - env/cm.yaml\n');
    writeFileSync(
      path.join(dir, 'base', 'env', 'cm.yaml.jinja'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ build_name }}-{{ mode }}\n',
    );
    const tmp = scratchDir();
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const ref = buildRef(commit());
      const objects = await renderKubefiles(config([ocaRepo({ kubefiles_path: dir })]), ref, 'stop');
      expect(objects.map((object) => object.metadata?.name)).toEqual([`${ref.name}-stop`]);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    expect(readdirSync(tmp)).toEqual([]);
    expect(readdirSync(path.join(dir, 'base', 'env'))).toEqual(['cm.yaml.jinja']);
  });
});

describe("the worker's renders", () => {
  it('build a kustomization that two modes render alike once, and each mode once', async () => {
    const cfg = config([ocaRepo()]);
    const build = buildRef(commit());
    const applied: KubernetesObject[][] = [];
    const cluster = { apply: async (objects: KubernetesObject[]) => void applied.push(objects) };
    const { applyKubefiles } = createActivities(cfg, cluster as unknown as BuildCluster);
    const kustomizeRuns = vi.spyOn(KustomizeRenderer.prototype, 'build');
    try {
      // The default kubefiles' start and stop modes: the same kustomization.
      for (const mode of ['stop', 'start', 'stop', 'deployment'] as const) await applyKubefiles(build, mode);
      expect(kustomizeRuns).toHaveBeenCalledTimes(2);
      expect(applied[1]).toEqual(applied[0]);
      expect(applied[3]).toEqual(await renderKubefiles(cfg, build, 'deployment'));
    } finally {
      kustomizeRuns.mockRestore();
    }
  });
});
