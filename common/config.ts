import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import type { BuildRepoSettings } from './types';

// Every setting is parsed and validated here, once. Names are runboat's, so that an existing
// runboat `.env` works unchanged; the TEMPORAL_* and a few RUNBOAT_* ones are this project's.

const jsonOf = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(error as Error).message})` });
        return z.NEVER;
      }
    })
    .pipe(schema);

const stringMap = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String));
const templateVars = z.record(z.string(), z.unknown());

/** A pattern of RUNBOAT_REPOS; runboat matches repos case-insensitively, branches exactly. */
const regex = (flags: '' | 'i') =>
  z.string().transform((source, ctx) => {
    try {
      return new RegExp(source, flags);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: `is not a valid regular expression (${(error as Error).message})`,
      });
      return z.NEVER;
    }
  });

/** runboat checks kubefiles paths at start-up (its `validate_path`): so does this project. */
const directory = z.string().superRefine((value, ctx) => {
  let isDirectory = false;
  try {
    isDirectory = statSync(value).isDirectory();
  } catch {
    // missing or unreadable: reported below
  }
  if (!isDirectory) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a directory` });
});

/** runboat's comma-separated list of kubectl resource types, e.g. `deployment,service,pvc`. */
const resourceTypes = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((type) => type.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(z.string().regex(/^[a-z0-9.-]+$/i, 'must be a comma-separated list of resource types'))
      .min(1, 'must name at least one resource type'),
  );

/** A runboat variable this project cannot honour: setting it stops start-up, saying why. */
const unsupported = (why: string) =>
  z.string().superRefine((_value, ctx) => {
    ctx.addIssue({ code: 'custom', message: `is not supported: ${why}` });
  });

/** runboat's default `deployment_resource_types`. */
export const DEFAULT_DEPLOYMENT_RESOURCE_TYPES = [
  'deployment',
  'service',
  'ingress',
  'configmap',
  'secret',
  'pvc',
  'job',
];

const buildSettings = z.object({
  image: z.string().regex(/^[^\s]+$/, 'must be an image reference without spaces'),
  env: stringMap.default({}),
  secret_env: stringMap.default({}),
  template_vars: templateVars.default({}),
  kubefiles_path: directory.optional(),
});

const repoSettings = z.object({
  repo: regex('i'),
  branch: regex(''),
  // runboat: "One and only one build settings is allowed per repo/branch entry."
  builds: z.array(buildSettings).length(1, 'must have exactly one build entry, as in runboat'),
});

const boolean = z
  .string()
  .regex(/^(1|0|true|false|yes|no|on|off)$/i, 'must be true or false')
  .transform((value) => /^(1|true|yes|on)$/i.test(value));

const positiveInt = z
  .string()
  .regex(/^\s*[1-9]\d*\s*$/, 'must be a whole number above 0')
  .transform(Number);
const port = z
  .string()
  .regex(/^\s*\d{1,5}\s*$/, 'must be a port number (0 to 65535)')
  .transform(Number)
  .refine((value) => value <= 65_535, 'must be a port number (0 to 65535)');
const hostPort = z.string().regex(/^[^:\s]*:\d+$/, 'must be host:port');

/** A duration: seconds (`3600`) or units (`2h`, `30m`, `1h30m`, `45s`, `1d`), in seconds. */
const duration = z.string().transform((text, ctx) => {
  const units: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };
  const value = text.trim().toLowerCase();
  let seconds = 0;
  if (/^\d+$/.test(value)) seconds = Number(value);
  else if (/^(\d+[dhms])+$/.test(value)) {
    for (const [, amount, unit] of value.matchAll(/(\d+)([dhms])/g)) seconds += Number(amount) * units[unit];
  } else {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 3600, 2h, 30m or 1h30m' });
    return z.NEVER;
  }
  if (seconds < 60) {
    ctx.addIssue({ code: 'custom', message: 'must be at least one minute' });
    return z.NEVER;
  }
  return seconds;
});
const url = z.url().transform((value) => value.replace(/\/+$/, ''));

/** Webhooks as GitHub's REST API names them, comma-separated. */
const webhooks = z.string().transform((text, ctx) => {
  const hooks = text
    .split(',')
    .map((each) => each.trim())
    .filter(Boolean);
  const bad = hooks.find(
    (hook) => hook !== 'app/hook' && !/^(orgs\/[\w.-]+|repos\/[\w.-]+\/[\w.-]+)\/hooks\/\d+$/.test(hook),
  );
  if (bad === undefined) return hooks;
  ctx.addIssue({
    code: 'custom',
    message: `has "${bad}": each must be orgs/<org>/hooks/<id>, repos/<owner>/<repo>/hooks/<id> or app/hook`,
  });
  return z.NEVER;
});

/**
 * A GitHub App's private key, as GitHub gives it (a PEM file). A `.env` file holds it on one line
 * with `\n` for its line breaks.
 */
const privateKey = z.string().transform((text, ctx) => {
  const pem = text.replace(/\\n/g, '\n').trim();
  if (privateKeyType(pem) === 'rsa') return pem;
  ctx.addIssue({
    code: 'custom',
    message:
      "is not an RSA private key in PEM format (the .pem file GitHub generates for the App; '\\n' may stand for its line breaks)",
  });
  return z.NEVER;
});

function privateKeyType(pem: string): string | undefined {
  try {
    return createPrivateKey(pem).asymmetricKeyType;
  } catch {
    return undefined;
  }
}

const envSchema = z
  .object({
    RUNBOAT_REPOS: jsonOf(z.array(repoSettings)).default([]),
    RUNBOAT_API_ADMIN_USER: z.string().default('admin'),
    RUNBOAT_API_ADMIN_PASSWD: z.string().optional(),
    RUNBOAT_MAX_INITIALIZING: positiveInt.default(2),
    RUNBOAT_MAX_STARTED: positiveInt.optional(),
    RUNBOAT_MAX_RUNNING: positiveInt.optional(),
    RUNBOAT_MAX_DEPLOYED: positiveInt.default(10),
    RUNBOAT_BUILD_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label'),
    RUNBOAT_BUILD_DOMAIN: z.string().regex(/^[a-z0-9.-]+$/i, 'must be a domain name'),
    RUNBOAT_BUILD_ENV: jsonOf(stringMap).default({}),
    RUNBOAT_BUILD_SECRET_ENV: jsonOf(stringMap).default({}),
    RUNBOAT_BUILD_TEMPLATE_VARS: jsonOf(templateVars).default({}),
    RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH: directory.optional(),
    RUNBOAT_GITHUB_TOKEN: z.string().optional(),
    RUNBOAT_GITHUB_APP_ID: positiveInt.optional(),
    RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey.optional(),
    RUNBOAT_GITHUB_WEBHOOK_SECRET: z.string().optional(),
    RUNBOAT_GITHUB_API_URL: url.default('https://api.github.com'),
    RUNBOAT_BASE_URL: url.default('http://localhost:8000'),
    RUNBOAT_DISABLE_COMMIT_STATUSES: boolean.default(false),
    RUNBOAT_NO_CLEANUP_JOB: boolean.default(false),
    RUNBOAT_KUSTOMIZE_RENDERER: z.string().default('kustomize-renderer'),
    RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: resourceTypes.default(DEFAULT_DEPLOYMENT_RESOURCE_TYPES),
    RUNBOAT_ADDITIONAL_FOOTER_HTML: z.string().default(''),
    RUNBOAT_LOG_CONFIG: unsupported(
      'runboat-temporal does not read Python logging configuration files; it logs JSON lines (pino) ' +
        'to stdout. Unset it, and set LOG_LEVEL (trace, debug, info, warn, error) instead',
    ).optional(),
    TEMPORAL_ADDRESS: z.string().default('localhost:7233'),
    TEMPORAL_NAMESPACE: z.string().default('default'),
    RUNBOAT_TASK_QUEUE: z.string().default('runboat'),
    RUNBOAT_EVICTION_INTERVAL: positiveInt.default(30),
    RUNBOAT_ORPHAN_GRACE: duration.default(3_600),
    RUNBOAT_INIT_TIMEOUT: positiveInt.default(1200),
    RUNBOAT_TEMPORAL_UI_URL: url.default('http://localhost:8233'),
    RUNBOAT_WORKER_METRICS_ADDRESS: hostPort.optional(),
    RUNBOAT_WORKER_HEALTH_ADDRESS: hostPort.optional(),
    PORT: port.default(8000),
    RUNBOAT_AUTO_STOP_AFTER: duration.optional(),
    RUNBOAT_MAX_BUILDS_PER_REF: positiveInt.optional(),
    RUNBOAT_MAX_EVENT_STREAMS: positiveInt.default(1_000),
    RUNBOAT_GITHUB_DEPLOYMENTS: boolean.optional(),
    RUNBOAT_GITHUB_CHECK_RUNS: boolean.default(false),
    RUNBOAT_SKIP_DRAFT_PULL_REQUESTS: boolean.default(false),
    RUNBOAT_GITHUB_WRITES_PER_MINUTE: positiveInt.default(60),
    RUNBOAT_REDELIVER_WEBHOOKS: webhooks.optional(),
  })
  .superRefine((env, ctx) => {
    const problem = (variable: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: [variable], message });
    const app = env.RUNBOAT_GITHUB_APP_ID !== undefined || env.RUNBOAT_GITHUB_APP_PRIVATE_KEY !== undefined;
    if (env.RUNBOAT_GITHUB_APP_ID !== undefined && env.RUNBOAT_GITHUB_APP_PRIVATE_KEY === undefined)
      problem('RUNBOAT_GITHUB_APP_ID', "needs RUNBOAT_GITHUB_APP_PRIVATE_KEY, the App's private key");
    if (env.RUNBOAT_GITHUB_APP_PRIVATE_KEY !== undefined && env.RUNBOAT_GITHUB_APP_ID === undefined)
      problem('RUNBOAT_GITHUB_APP_PRIVATE_KEY', "needs RUNBOAT_GITHUB_APP_ID, the App's id");
    if (app && env.RUNBOAT_GITHUB_TOKEN !== undefined)
      problem(
        'RUNBOAT_GITHUB_TOKEN',
        'and RUNBOAT_GITHUB_APP_ID are both set: the service acts on GitHub either with a token or as an App; unset one',
      );
    if (env.RUNBOAT_GITHUB_CHECK_RUNS && !app)
      problem(
        'RUNBOAT_GITHUB_CHECK_RUNS',
        'needs a GitHub App (RUNBOAT_GITHUB_APP_ID, RUNBOAT_GITHUB_APP_PRIVATE_KEY): GitHub lets only Apps create check runs',
      );
    const hooks = env.RUNBOAT_REDELIVER_WEBHOOKS ?? [];
    if (hooks.length && !app && env.RUNBOAT_GITHUB_TOKEN === undefined)
      problem(
        'RUNBOAT_REDELIVER_WEBHOOKS',
        "needs RUNBOAT_GITHUB_TOKEN (or a GitHub App): a token that may read these webhooks' deliveries and redeliver them",
      );
    if (hooks.includes('app/hook') && !app)
      problem(
        'RUNBOAT_REDELIVER_WEBHOOKS',
        "has app/hook, a GitHub App's webhook: set RUNBOAT_GITHUB_APP_ID and RUNBOAT_GITHUB_APP_PRIVATE_KEY",
      );
  });

export type RepoSettings = z.infer<typeof repoSettings>;
export type BuildSettings = z.infer<typeof buildSettings>;

export interface Config {
  repos: RepoSettings[];
  adminUser: string;
  adminPassword: string | undefined;
  maxInitializing: number;
  maxStarted: number;
  maxDeployed: number;
  buildNamespace: string;
  buildDomain: string;
  buildEnv: Record<string, string>;
  buildSecretEnv: Record<string, string>;
  buildTemplateVars: Record<string, unknown>;
  defaultKubefilesPath: string;
  githubToken: string | undefined;
  /** The GitHub App the service acts as, instead of a token: installation tokens are minted per account. */
  githubApp: GitHubAppCredentials | undefined;
  githubWebhookSecret: string | undefined;
  githubApiUrl: string;
  baseUrl: string;
  disableCommitStatuses: boolean;
  noCleanupJob: boolean;
  /** The kustomize-renderer binary (scripts/kustomize-renderer) that builds kubefiles. */
  kustomizeRenderer: string;
  /**
   * runboat's `RUNBOAT_DEPLOYMENT_RESOURCE_TYPES`: the kubectl resource types (as `kubectl
   * delete TYPES -l runboat/build=<name>` takes them) that a build's kubefiles create.
   */
  deploymentResourceTypes: string[];
  /** Operator-provided HTML shown in the footer of every Web UI page: trusted, never escaped. */
  additionalFooterHtml: string;
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  evictionIntervalSeconds: number;
  /** Age of a build's newest object before the orphan sweep may delete it (no running workflow). */
  orphanGraceSeconds: number;
  initTimeoutSeconds: number;
  temporalUiUrl: string;
  /** `host:port` of the worker's Prometheus endpoint; none when unset. */
  workerMetricsAddress: string | undefined;
  /** `host:port` of the worker's probes (/healthz, /readyz); none when unset. */
  workerHealthAddress: string | undefined;
  port: number;
  /** Seconds a started build may go unvisited before it is stopped; none when unset. */
  autoStopAfterSeconds: number | undefined;
  /** Builds a branch or pull request keeps; older ones are undeployed. None when unset. */
  maxBuildsPerRef: number | undefined;
  /** Open `/build-events` streams one API process serves; more are refused (503). */
  maxEventStreams: number;
  /** Report each build as a GitHub deployment (default: when a token or an App is set). */
  githubDeployments: boolean;
  /**
   * Report each build as a check run (`runboat/build`, with a Re-run button) instead of a commit
   * status; a GitHub App only.
   */
  githubCheckRuns: boolean;
  /**
   * Draft pull requests get no build: one comes when the pull request is marked ready for review,
   * and a pull request converted to a draft loses its builds. Off: runboat's behaviour.
   */
  skipDraftPullRequests: boolean;
  /** Statuses and deployments posted to GitHub a minute at most (its limits: 80, 500 an hour). */
  githubWritesPerMinute: number;
  /**
   * The webhooks (`orgs/<org>/hooks/<id>`, `repos/<owner>/<repo>/hooks/<id>`, `app/hook`) whose deliveries
   * that failed (the API down or unable to reach Temporal) the service asks GitHub to send again.
   */
  redeliverWebhooks: string[];
}

export interface GitHubAppCredentials {
  id: number;
  /** PEM. */
  privateKey: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const DEFAULT_KUBEFILES_PATH = path.resolve(__dirname, '..', 'kubefiles');

/** Reads `.env` from `dir` if present; variables already in `env` win over it. */
export function withDotEnv(env: NodeJS.ProcessEnv, dir = process.cwd()): NodeJS.ProcessEnv {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return env;
  return { ...parseEnv(readFileSync(file, 'utf8')), ...env };
}

/** Parses and validates the configuration; throws one ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = withDotEnv(process.env)): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  // With each issue's input: a value that is there but wrong is told apart from a missing one.
  const parsed = envSchema.safeParse(present, { reportInput: true });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const [variable, ...where] = issue.path;
      const detail = where.length ? ` (at ${where.join('.')})` : '';
      const message =
        issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message;
      return `${String(variable)}${detail} ${message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    repos: e.RUNBOAT_REPOS,
    adminUser: e.RUNBOAT_API_ADMIN_USER,
    adminPassword: e.RUNBOAT_API_ADMIN_PASSWD,
    maxInitializing: e.RUNBOAT_MAX_INITIALIZING,
    maxStarted: e.RUNBOAT_MAX_STARTED ?? e.RUNBOAT_MAX_RUNNING ?? 6,
    maxDeployed: e.RUNBOAT_MAX_DEPLOYED,
    buildNamespace: e.RUNBOAT_BUILD_NAMESPACE,
    buildDomain: e.RUNBOAT_BUILD_DOMAIN,
    buildEnv: e.RUNBOAT_BUILD_ENV,
    buildSecretEnv: e.RUNBOAT_BUILD_SECRET_ENV,
    buildTemplateVars: e.RUNBOAT_BUILD_TEMPLATE_VARS,
    defaultKubefilesPath: e.RUNBOAT_BUILD_DEFAULT_KUBEFILES_PATH ?? DEFAULT_KUBEFILES_PATH,
    githubToken: e.RUNBOAT_GITHUB_TOKEN,
    githubApp:
      e.RUNBOAT_GITHUB_APP_ID === undefined || e.RUNBOAT_GITHUB_APP_PRIVATE_KEY === undefined
        ? undefined
        : { id: e.RUNBOAT_GITHUB_APP_ID, privateKey: e.RUNBOAT_GITHUB_APP_PRIVATE_KEY },
    githubWebhookSecret: e.RUNBOAT_GITHUB_WEBHOOK_SECRET,
    githubApiUrl: e.RUNBOAT_GITHUB_API_URL,
    baseUrl: e.RUNBOAT_BASE_URL,
    disableCommitStatuses: e.RUNBOAT_DISABLE_COMMIT_STATUSES,
    noCleanupJob: e.RUNBOAT_NO_CLEANUP_JOB,
    kustomizeRenderer: e.RUNBOAT_KUSTOMIZE_RENDERER,
    deploymentResourceTypes: e.RUNBOAT_DEPLOYMENT_RESOURCE_TYPES,
    additionalFooterHtml: e.RUNBOAT_ADDITIONAL_FOOTER_HTML,
    temporalAddress: e.TEMPORAL_ADDRESS,
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    taskQueue: e.RUNBOAT_TASK_QUEUE,
    evictionIntervalSeconds: e.RUNBOAT_EVICTION_INTERVAL,
    orphanGraceSeconds: e.RUNBOAT_ORPHAN_GRACE,
    initTimeoutSeconds: e.RUNBOAT_INIT_TIMEOUT,
    temporalUiUrl: e.RUNBOAT_TEMPORAL_UI_URL,
    workerMetricsAddress: e.RUNBOAT_WORKER_METRICS_ADDRESS,
    workerHealthAddress: e.RUNBOAT_WORKER_HEALTH_ADDRESS,
    port: e.PORT,
    autoStopAfterSeconds: e.RUNBOAT_AUTO_STOP_AFTER,
    maxBuildsPerRef: e.RUNBOAT_MAX_BUILDS_PER_REF,
    maxEventStreams: e.RUNBOAT_MAX_EVENT_STREAMS,
    githubDeployments:
      e.RUNBOAT_GITHUB_DEPLOYMENTS ??
      (e.RUNBOAT_GITHUB_TOKEN !== undefined || e.RUNBOAT_GITHUB_APP_ID !== undefined),
    githubCheckRuns: e.RUNBOAT_GITHUB_CHECK_RUNS,
    skipDraftPullRequests: e.RUNBOAT_SKIP_DRAFT_PULL_REQUESTS,
    githubWritesPerMinute: e.RUNBOAT_GITHUB_WRITES_PER_MINUTE,
    redeliverWebhooks: e.RUNBOAT_REDELIVER_WEBHOOKS ?? [],
  };
}

/** The repo entry whose patterns match, or undefined when the repo/branch is not supported. */
export function findRepoSettings(
  config: Config,
  repo: string,
  targetBranch: string,
): RepoSettings | undefined {
  return config.repos.find(
    (entry) => matchesAtStart(entry.repo, repo) && matchesAtStart(entry.branch, targetBranch),
  );
}

/** What a build created now carries of its repo entry (see BuildRepoSettings). */
export function captureRepoSettings(entry: RepoSettings): BuildRepoSettings {
  const { image, env, template_vars, kubefiles_path } = entry.builds[0];
  return { image, env, template_vars, ...(kubefiles_path === undefined ? {} : { kubefiles_path }) };
}

/** Python's `re.match`, as runboat uses it: anchored at the start only. */
function matchesAtStart(pattern: RegExp, value: string): boolean {
  return pattern.exec(value)?.index === 0;
}
