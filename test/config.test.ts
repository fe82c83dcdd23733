import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  DEFAULT_DEPLOYMENT_RESOURCE_TYPES,
  DEFAULT_KUBEFILES_PATH,
  findRepoSettings,
  loadConfig,
  withDotEnv,
} from '../common/config';

// Pure unit tests of the configuration: every environment is passed explicitly, so the
// process environment and any `.env` in the working directory play no part.

const REQUIRED = { RUNBOAT_BUILD_NAMESPACE: 'runboat-builds', RUNBOAT_BUILD_DOMAIN: 'runboat.example.com' };

const load = (env: Record<string, string> = {}) => loadConfig({ ...REQUIRED, ...env });

/** The message of the ConfigError that `env` causes; fails the test if it loads. */
function configError(env: Record<string, string | undefined>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

const repos = (value: unknown) => ({ RUNBOAT_REPOS: JSON.stringify(value) });

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'runboat-config-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

describe('loadConfig defaults', () => {
  const config = load();

  it('has runboat defaults for the limits', () => {
    expect(config.maxInitializing).toBe(2);
    expect(config.maxStarted).toBe(6);
    expect(config.maxDeployed).toBe(10);
  });

  it('has this project defaults for port, timeouts and Temporal', () => {
    expect(config.port).toBe(8000);
    expect(config.initTimeoutSeconds).toBe(1200);
    expect(config.evictionIntervalSeconds).toBe(30);
    expect(config.temporalAddress).toBe('localhost:7233');
    expect(config.temporalNamespace).toBe('default');
    expect(config.taskQueue).toBe('runboat');
    expect(config.temporalUiUrl).toBe('http://localhost:8233');
  });

  it('keeps the required values and defaults the rest', () => {
    expect(config.buildNamespace).toBe('runboat-builds');
    expect(config.buildDomain).toBe('runboat.example.com');
    expect(config.repos).toEqual([]);
    expect(config.buildEnv).toEqual({});
    expect(config.buildSecretEnv).toEqual({});
    expect(config.buildTemplateVars).toEqual({});
    expect(config.defaultKubefilesPath).toBe(DEFAULT_KUBEFILES_PATH);
    expect(DEFAULT_KUBEFILES_PATH).toBe(path.resolve(__dirname, '..', 'kubefiles'));
    expect(config.disableCommitStatuses).toBe(false);
    expect(config.noCleanupJob).toBe(false);
    expect(config.adminUser).toBe('admin');
    expect(config.adminPassword).toBeUndefined();
  });

  it('treats empty values as unset', () => {
    const config = load({ RUNBOAT_MAX_DEPLOYED: '', PORT: '', RUNBOAT_REPOS: '' });
    expect(config.maxDeployed).toBe(10);
    expect(config.port).toBe(8000);
    expect(config.repos).toEqual([]);
  });
});

describe('loadConfig values', () => {
  it('parses integers', () => {
    const config = load({
      RUNBOAT_MAX_INITIALIZING: '3',
      RUNBOAT_MAX_DEPLOYED: '250',
      PORT: '8080',
      RUNBOAT_INIT_TIMEOUT: '60',
      RUNBOAT_EVICTION_INTERVAL: '5',
    });
    expect(config.maxInitializing).toBe(3);
    expect(config.maxDeployed).toBe(250);
    expect(config.port).toBe(8080);
    expect(config.initTimeoutSeconds).toBe(60);
    expect(config.evictionIntervalSeconds).toBe(5);
  });

  it('accepts RUNBOAT_MAX_RUNNING as an alias of RUNBOAT_MAX_STARTED', () => {
    expect(load({ RUNBOAT_MAX_RUNNING: '4' }).maxStarted).toBe(4);
    expect(load({ RUNBOAT_MAX_STARTED: '9' }).maxStarted).toBe(9);
  });

  it('lets RUNBOAT_MAX_STARTED win over RUNBOAT_MAX_RUNNING', () => {
    expect(load({ RUNBOAT_MAX_STARTED: '3', RUNBOAT_MAX_RUNNING: '12' }).maxStarted).toBe(3);
  });

  it.each([
    ['true', true],
    ['1', true],
    ['TRUE', true],
    ['false', false],
    ['0', false],
  ])('reads boolean %j as %s', (value, expected) => {
    const config = load({
      RUNBOAT_DISABLE_COMMIT_STATUSES: value,
      RUNBOAT_NO_CLEANUP_JOB: value,
      RUNBOAT_SKIP_DRAFT_PULL_REQUESTS: value,
    });
    expect(config.disableCommitStatuses).toBe(expected);
    expect(config.noCleanupJob).toBe(expected);
    expect(config.skipDraftPullRequests).toBe(expected);
  });

  it('parses the global build env, secret env and template vars', () => {
    const kubefiles = tempDir();
    const config = load({
      RUNBOAT_BUILD_ENV: JSON.stringify({ PGHOST: 'postgres', PGPORT: 5432 }),
      RUNBOAT_BUILD_SECRET_ENV: JSON.stringify({ PGPASSWORD: 's3cret' }),
      RUNBOAT_BUILD_TEMPLATE_VARS: JSON.stringify({ storageClassName: 'fast', replicas: 2 }),
      RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH: kubefiles,
    });
    expect(config.buildEnv).toEqual({ PGHOST: 'postgres', PGPORT: '5432' });
    expect(config.buildSecretEnv).toEqual({ PGPASSWORD: 's3cret' });
    expect(config.buildTemplateVars).toEqual({ storageClassName: 'fast', replicas: 2 });
    expect(config.defaultKubefilesPath).toBe(kubefiles);
  });

  it('parses RUNBOAT_DEPLOYMENT_RESOURCE_TYPES as runboat does (comma-separated), with its default', () => {
    expect(load().deploymentResourceTypes).toEqual(DEFAULT_DEPLOYMENT_RESOURCE_TYPES);
    expect(DEFAULT_DEPLOYMENT_RESOURCE_TYPES.join(',')).toBe(
      'deployment,service,ingress,configmap,secret,pvc,job',
    );
    expect(
      load({ RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: 'deployment, service,ingress.networking.k8s.io,,pvc' })
        .deploymentResourceTypes,
    ).toEqual(['deployment', 'service', 'ingress.networking.k8s.io', 'pvc']);
  });

  it('keeps RUNBOAT_ADDITIONAL_FOOTER_HTML as given (trusted operator HTML)', () => {
    expect(load().additionalFooterHtml).toBe('');
    const html = '<p>Hosted by <a href="https://example.org">Example</a> &amp; friends</p>';
    expect(load({ RUNBOAT_ADDITIONAL_FOOTER_HTML: html }).additionalFooterHtml).toBe(html);
  });

  it('parses RUNBOAT_REDELIVER_WEBHOOKS (comma-separated, as GitHub names webhooks), none by default', () => {
    expect(load().redeliverWebhooks).toEqual([]);
    expect(
      load({
        RUNBOAT_GITHUB_TOKEN: 'token',
        RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/OCA/hooks/123, repos/acme/web.site/hooks/45,',
      }).redeliverWebhooks,
    ).toEqual(['orgs/OCA/hooks/123', 'repos/acme/web.site/hooks/45']);
  });

  it("takes a GitHub App's id and private key, one line with \\n for its line breaks as a .env holds it", () => {
    const { privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const config = load({
      RUNBOAT_GITHUB_APP_ID: '4321',
      RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey.replace(/\n/g, '\\n'),
      RUNBOAT_REDELIVER_WEBHOOKS: 'app/hook,orgs/OCA/hooks/123',
    });
    expect(config.githubApp).toEqual({ id: 4321, privateKey: privateKey.trim() });
    expect(config.githubToken).toBeUndefined();
    expect(config.githubDeployments).toBe(true);
    expect(config.redeliverWebhooks).toEqual(['app/hook', 'orgs/OCA/hooks/123']);
    expect(
      load({ RUNBOAT_GITHUB_APP_ID: '4321', RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey }).githubApp,
    ).toEqual(config.githubApp);
    expect(load().githubApp).toBeUndefined();
  });

  it('strips the trailing slash of URLs', () => {
    expect(load({ RUNBOAT_BASE_URL: 'https://runboat.example.com/' }).baseUrl).toBe(
      'https://runboat.example.com',
    );
  });

  it('parses RUNBOAT_REPOS into regexes and builds with defaults', () => {
    const kubefiles = tempDir();
    const config = load(
      repos([
        {
          repo: '^oca/.*',
          branch: '^1[0-9]\\.0$',
          builds: [{ image: 'ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest' }],
        },
        {
          repo: '^ocb/.*',
          branch: '^16\\.0$',
          builds: [
            {
              image: 'ghcr.io/oca/oca-ci/py3.10-ocb16.0:latest',
              env: { PGUSER: 'odoo', WORKERS: 2, DEBUG: true },
              secret_env: { PGPASSWORD: 'pw' },
              template_vars: { storageClassName: 'fast' },
              kubefiles_path: kubefiles,
            },
          ],
        },
        { repo: 'acme/odoo', branch: 'main', builds: [{ image: 'acme/odoo:17.0' }] },
      ]),
    );
    expect(config.repos).toHaveLength(3);
    const [oca, ocb, acme] = config.repos;
    expect(oca.repo).toBeInstanceOf(RegExp);
    expect(oca.repo.source).toBe('^oca\\/.*');
    expect(oca.repo.flags).toContain('i');
    // runboat: re.match(repo, ..., re.IGNORECASE) but re.match(branch, ...) as is.
    expect(oca.branch.flags).not.toContain('i');
    expect(oca.branch.test('16.0')).toBe(true);
    expect(oca.branch.test('16x0')).toBe(false);
    expect(oca.builds[0]).toEqual({
      image: 'ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest',
      env: {},
      secret_env: {},
      template_vars: {},
    });
    expect(ocb.builds[0]).toEqual({
      image: 'ghcr.io/oca/oca-ci/py3.10-ocb16.0:latest',
      env: { PGUSER: 'odoo', WORKERS: '2', DEBUG: 'true' },
      secret_env: { PGPASSWORD: 'pw' },
      template_vars: { storageClassName: 'fast' },
      kubefiles_path: kubefiles,
    });
    expect(acme.repo.source).toBe('acme\\/odoo');
    expect(acme.builds).toEqual([{ image: 'acme/odoo:17.0', env: {}, secret_env: {}, template_vars: {} }]);
  });
});

describe('loadConfig errors', () => {
  it('names a missing RUNBOAT_BUILD_NAMESPACE', () => {
    const message = configError({ RUNBOAT_BUILD_DOMAIN: 'runboat.example.com' });
    expect(message).toContain('RUNBOAT_BUILD_NAMESPACE');
    expect(message).toMatch(/RUNBOAT_BUILD_NAMESPACE is required/);
    expect(message).not.toContain('RUNBOAT_BUILD_DOMAIN');
  });

  it('names a missing RUNBOAT_BUILD_DOMAIN', () => {
    const message = configError({ RUNBOAT_BUILD_NAMESPACE: 'builds' });
    expect(message).toMatch(/RUNBOAT_BUILD_DOMAIN is required/);
    expect(message).not.toContain('RUNBOAT_BUILD_NAMESPACE');
  });

  it('counts an empty RUNBOAT_BUILD_NAMESPACE as missing', () => {
    expect(configError({ ...REQUIRED, RUNBOAT_BUILD_NAMESPACE: '' })).toMatch(
      /RUNBOAT_BUILD_NAMESPACE is required/,
    );
  });

  it('refuses a namespace that is not a DNS label', () => {
    expect(configError({ ...REQUIRED, RUNBOAT_BUILD_NAMESPACE: 'Builds_1' })).toContain(
      'RUNBOAT_BUILD_NAMESPACE',
    );
  });

  it('names RUNBOAT_REPOS when it is not JSON', () => {
    const message = configError({ ...REQUIRED, RUNBOAT_REPOS: "[{repo: 'oca/.*'" });
    expect(message).toContain('RUNBOAT_REPOS');
    expect(message).toContain('is not valid JSON');
  });

  it('names RUNBOAT_REPOS and the pattern when a regex is invalid', () => {
    const message = configError({
      ...REQUIRED,
      ...repos([{ repo: 'oca/(unclosed', branch: '.*', builds: [{ image: 'odoo:16.0' }] }]),
    });
    expect(message).toContain('RUNBOAT_REPOS');
    expect(message).toContain('0.repo');
    expect(message).toContain('oca/(unclosed');
    expect(message).toContain('is not a valid regular expression');
  });

  it('names RUNBOAT_REPOS when an entry has no builds or no image', () => {
    expect(configError({ ...REQUIRED, ...repos([{ repo: 'a', branch: 'b', builds: [] }]) })).toContain(
      'RUNBOAT_REPOS (at 0.builds)',
    );
    expect(configError({ ...REQUIRED, ...repos([{ repo: 'a', branch: 'b', builds: [{}] }]) })).toContain(
      'RUNBOAT_REPOS (at 0.builds.0.image)',
    );
  });

  it('refuses a repo entry with more than one build, as runboat does', () => {
    const message = configError({
      ...REQUIRED,
      ...repos([{ repo: 'a', branch: 'b', builds: [{ image: 'odoo:16' }, { image: 'odoo:17' }] }]),
    });
    expect(message).toContain('RUNBOAT_REPOS (at 0.builds) must have exactly one build entry');
  });

  it('refuses kubefiles paths that are not directories, naming the variable', () => {
    const file = path.join(tempDir(), 'kustomization.yaml');
    writeFileSync(file, 'resources: []\n');
    for (const missing of ['/no/such/kubefiles', file]) {
      expect(configError({ ...REQUIRED, RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH: missing })).toContain(
        `RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH ${JSON.stringify(missing)} is not a directory`,
      );
      const message = configError({
        ...REQUIRED,
        ...repos([{ repo: 'a', branch: 'b', builds: [{ image: 'odoo:16', kubefiles_path: missing }] }]),
      });
      expect(message).toContain(
        `RUNBOAT_REPOS (at 0.builds.0.kubefiles_path) ${JSON.stringify(missing)} is not a directory`,
      );
    }
  });

  it('refuses RUNBOAT_LOG_CONFIG, saying what to use instead', () => {
    const message = configError({ ...REQUIRED, RUNBOAT_LOG_CONFIG: 'log-config.yaml' });
    expect(message).toContain('RUNBOAT_LOG_CONFIG is not supported');
    expect(message).toContain('LOG_LEVEL');
    // Empty counts as unset, as for every variable.
    expect(load({ RUNBOAT_LOG_CONFIG: '' }).buildNamespace).toBe('runboat-builds');
  });

  it('refuses a RUNBOAT_DEPLOYMENT_RESOURCE_TYPES that is no list of types', () => {
    expect(configError({ ...REQUIRED, RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: 'deployment;rm -rf' })).toContain(
      'RUNBOAT_DEPLOYMENT_RESOURCE_TYPES',
    );
    expect(configError({ ...REQUIRED, RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: ' , ' })).toContain(
      'RUNBOAT_DEPLOYMENT_RESOURCE_TYPES must name at least one resource type',
    );
  });

  it.each(['ten', '2.5', '0', '-3'])('names RUNBOAT_MAX_DEPLOYED=%j', (value) => {
    const message = configError({ ...REQUIRED, RUNBOAT_MAX_DEPLOYED: value });
    expect(message).toContain('RUNBOAT_MAX_DEPLOYED');
    expect(message).not.toContain('RUNBOAT_BUILD_NAMESPACE');
  });

  it.each(['RUNBOAT_WORKER_METRICS_ADDRESS', 'RUNBOAT_WORKER_HEALTH_ADDRESS'])(
    'takes %s as host:port, and names it otherwise',
    (variable) => {
      expect(load({ [variable]: '0.0.0.0:8001' })).toMatchObject({
        workerMetricsAddress: variable === 'RUNBOAT_WORKER_METRICS_ADDRESS' ? '0.0.0.0:8001' : undefined,
        workerHealthAddress: variable === 'RUNBOAT_WORKER_HEALTH_ADDRESS' ? '0.0.0.0:8001' : undefined,
      });
      expect(load({ [variable]: ':8001' })).toBeDefined();
      expect(configError({ ...REQUIRED, [variable]: '8001' })).toContain(`${variable} must be host:port`);
    },
  );

  it('refuses a RUNBOAT_REDELIVER_WEBHOOKS entry that names no webhook, or no token to redeliver with', () => {
    const message = configError({
      ...REQUIRED,
      RUNBOAT_GITHUB_TOKEN: 'token',
      RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/OCA/hooks/123,https://github.com/OCA/hooks/4',
    });
    expect(message).toContain(
      'RUNBOAT_REDELIVER_WEBHOOKS has "https://github.com/OCA/hooks/4": each must be orgs/<org>/hooks/<id>, repos/<owner>/<repo>/hooks/<id> or app/hook',
    );
    expect(configError({ ...REQUIRED, RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/OCA/hooks/123' })).toContain(
      'RUNBOAT_REDELIVER_WEBHOOKS needs RUNBOAT_GITHUB_TOKEN',
    );
    expect(
      configError({ ...REQUIRED, RUNBOAT_GITHUB_TOKEN: 'token', RUNBOAT_REDELIVER_WEBHOOKS: 'app/hook' }),
    ).toContain("RUNBOAT_REDELIVER_WEBHOOKS has app/hook, a GitHub App's webhook: set RUNBOAT_GITHUB_APP_ID");
  });

  it('refuses half a GitHub App, a key that is not its, an id that is not one, and an App beside a token', () => {
    const pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }) as string;
    const privateKey = pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    const ecKey = pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    expect(configError({ ...REQUIRED, RUNBOAT_GITHUB_APP_ID: '4321' })).toBe(
      "invalid configuration: RUNBOAT_GITHUB_APP_ID needs RUNBOAT_GITHUB_APP_PRIVATE_KEY, the App's private key",
    );
    expect(configError({ ...REQUIRED, RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey })).toBe(
      "invalid configuration: RUNBOAT_GITHUB_APP_PRIVATE_KEY needs RUNBOAT_GITHUB_APP_ID, the App's id",
    );
    for (const notTheApps of ['ghp_notakey', ecKey])
      expect(
        configError({
          ...REQUIRED,
          RUNBOAT_GITHUB_APP_ID: '4321',
          RUNBOAT_GITHUB_APP_PRIVATE_KEY: notTheApps,
        }),
      ).toContain('RUNBOAT_GITHUB_APP_PRIVATE_KEY is not an RSA private key in PEM format');
    expect(
      configError({
        ...REQUIRED,
        RUNBOAT_GITHUB_APP_ID: 'my-app',
        RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey,
      }),
    ).toBe('invalid configuration: RUNBOAT_GITHUB_APP_ID must be a whole number above 0');
    expect(
      configError({
        ...REQUIRED,
        RUNBOAT_GITHUB_APP_ID: '4321',
        RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey,
        RUNBOAT_GITHUB_TOKEN: 'token',
      }),
    ).toContain('RUNBOAT_GITHUB_TOKEN and RUNBOAT_GITHUB_APP_ID are both set');
    expect(
      configError({ ...REQUIRED, RUNBOAT_GITHUB_TOKEN: 'token', RUNBOAT_GITHUB_CHECK_RUNS: 'true' }),
    ).toBe(
      'invalid configuration: RUNBOAT_GITHUB_CHECK_RUNS needs a GitHub App (RUNBOAT_GITHUB_APP_ID, RUNBOAT_GITHUB_APP_PRIVATE_KEY): GitHub lets only Apps create check runs',
    );
  });

  it('names a number that is not one, rather than calling it missing', () => {
    for (const value of ['abc', '-1', '1.5', '0'])
      expect(configError({ ...REQUIRED, RUNBOAT_MAX_INITIALIZING: value })).toBe(
        'invalid configuration: RUNBOAT_MAX_INITIALIZING must be a whole number above 0',
      );
    expect(load({ RUNBOAT_MAX_INITIALIZING: ' 20 ' }).maxInitializing).toBe(20);
    for (const value of ['http', '65536'])
      expect(configError({ ...REQUIRED, PORT: value })).toBe(
        'invalid configuration: PORT must be a port number (0 to 65535)',
      );
    expect(load({ PORT: '0' }).port).toBe(0);
    // Inside RUNBOAT_REPOS too: a value of the wrong type is not a missing one.
    expect(
      configError({ ...REQUIRED, ...repos([{ repo: 5, branch: '.*', builds: [{ image: 'i' }] }]) }),
    ).toBe(
      'invalid configuration: RUNBOAT_REPOS (at 0.repo) Invalid input: expected string, received number',
    );
  });

  it('names a bad boolean', () => {
    const message = configError({ ...REQUIRED, RUNBOAT_NO_CLEANUP_JOB: 'maybe' });
    expect(message).toContain('RUNBOAT_NO_CLEANUP_JOB');
    expect(message).toContain('must be true or false');
    expect(configError({ ...REQUIRED, RUNBOAT_SKIP_DRAFT_PULL_REQUESTS: 'drafts' })).toContain(
      'RUNBOAT_SKIP_DRAFT_PULL_REQUESTS',
    );
  });

  it('names every bad variable in one message', () => {
    const message = configError({
      RUNBOAT_BUILD_DOMAIN: 'runboat.example.com',
      RUNBOAT_REPOS: 'not json',
      RUNBOAT_MAX_DEPLOYED: 'lots',
      RUNBOAT_MAX_STARTED: '1.5',
      RUNBOAT_BUILD_ENV: '{"A": ',
    });
    expect(message).toMatch(/^invalid configuration: /);
    for (const variable of [
      'RUNBOAT_BUILD_NAMESPACE',
      'RUNBOAT_REPOS',
      'RUNBOAT_MAX_DEPLOYED',
      'RUNBOAT_MAX_STARTED',
      'RUNBOAT_BUILD_ENV',
    ]) {
      expect(message).toContain(variable);
    }
    expect(message).not.toContain('RUNBOAT_BUILD_DOMAIN');
  });
});

describe('withDotEnv', () => {
  it('reads .env from the directory and lets the process environment win', () => {
    const dir = tempDir();
    writeFileSync(
      path.join(dir, '.env'),
      [
        '# a runboat .env',
        'RUNBOAT_BUILD_NAMESPACE=from-dotenv',
        'RUNBOAT_BUILD_DOMAIN=dotenv.example.com',
        'RUNBOAT_MAX_DEPLOYED=42',
        `RUNBOAT_REPOS='[{"repo": "^oca/", "branch": ".*", "builds": [{"image": "odoo:16.0"}]}]'`,
        '',
      ].join('\n'),
    );
    const env = withDotEnv({ RUNBOAT_BUILD_DOMAIN: 'process.example.com', PORT: '9000' }, dir);
    expect(env).toMatchObject({
      RUNBOAT_BUILD_NAMESPACE: 'from-dotenv',
      RUNBOAT_BUILD_DOMAIN: 'process.example.com',
      RUNBOAT_MAX_DEPLOYED: '42',
      PORT: '9000',
    });
    const config = loadConfig(env);
    expect(config.buildNamespace).toBe('from-dotenv');
    expect(config.buildDomain).toBe('process.example.com');
    expect(config.maxDeployed).toBe(42);
    expect(config.port).toBe(9000);
    expect(config.repos).toHaveLength(1);
    expect(config.repos[0].repo.source).toBe('^oca\\/');
  });

  it('returns the environment unchanged when there is no .env', () => {
    const env = { RUNBOAT_BUILD_NAMESPACE: 'only-process' };
    expect(withDotEnv(env, tempDir())).toEqual({ RUNBOAT_BUILD_NAMESPACE: 'only-process' });
  });
});

describe('findRepoSettings', () => {
  const config = load(
    repos([
      { repo: 'oca/', branch: '1[0-9]\\.0', builds: [{ image: 'ghcr.io/oca/ci:first' }] },
      { repo: '^acme/odoo$', branch: '^main$', builds: [{ image: 'acme/odoo:main' }] },
      { repo: '.*', branch: 'release/', builds: [{ image: 'fallback:1' }] },
    ]),
  );
  const imageOf = (repo: string, branch: string) => findRepoSettings(config, repo, branch)?.builds[0].image;

  it('matches the first entry whose repo and branch patterns match', () => {
    expect(imageOf('oca/mis-builder', '16.0')).toBe('ghcr.io/oca/ci:first');
    expect(imageOf('acme/odoo', 'main')).toBe('acme/odoo:main');
    expect(imageOf('oca/mis-builder', 'release/2')).toBe('fallback:1');
  });

  it('is anchored at the start only, like Python re.match', () => {
    // `oca/` matches any oca repo and `1[0-9]\.0` also matches `16.0-fix`, as in runboat.
    expect(imageOf('oca/x', '16.0')).toBe('ghcr.io/oca/ci:first');
    expect(imageOf('oca/x', '16.0-fix')).toBe('ghcr.io/oca/ci:first');
    // ... but not somewhere in the middle.
    expect(imageOf('notoca/x', '16.0')).toBeUndefined();
    expect(imageOf('oca/x', 'v16.0')).toBeUndefined();
    expect(imageOf('acme/odoo-extra', 'main')).toBeUndefined();
  });

  it('matches repos case-insensitively and branches case-sensitively, as runboat', () => {
    expect(imageOf('OCA/Mis-Builder', '16.0')).toBe('ghcr.io/oca/ci:first');
    expect(imageOf('ACME/Odoo', 'main')).toBe('acme/odoo:main');
    expect(imageOf('acme/odoo', 'MAIN')).toBeUndefined();
    expect(imageOf('acme/odoo', 'Main')).toBeUndefined();
  });

  it('returns undefined for an unsupported branch or repo', () => {
    expect(findRepoSettings(config, 'oca/mis-builder', '9.0')).toBeUndefined();
    expect(findRepoSettings(config, 'acme/odoo', 'develop')).toBeUndefined();
    expect(findRepoSettings(config, 'other/repo', '16.0')).toBeUndefined();
    expect(findRepoSettings(load(), 'oca/x', '16.0')).toBeUndefined();
  });
});
