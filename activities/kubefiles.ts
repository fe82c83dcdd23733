import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import nunjucks from 'nunjucks';
import { buildRef, namesBuildOf, UnsafeCommitInfoError } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import type { BuildRef, BuildRepoSettings, KubefilesMode } from '../common/types';
import { KustomizeError, kustomizeRenderer } from './kustomize';

// Turns a kubefiles directory (runboat's format) into the plain objects of one mode.
// Knows nothing of Odoo: what is deployed lives entirely in the directory.

// Python-style `dict.items()` and friends, which runboat's templates use.
nunjucks.installJinjaCompat();
const jinja = new nunjucks.Environment(null, { autoescape: false });

/** A problem with the build's input or its kubefiles, which retrying cannot fix. */
export class KubefilesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubefilesError';
  }
}

export async function renderKubefiles(
  config: Config,
  build: BuildRef,
  mode: KubefilesMode,
  repo?: BuildRepoSettings,
): Promise<KubernetesObject[]> {
  return buildKustomization(config, await prepareKustomization(config, build, mode, repo));
}

/**
 * A build's kubefiles for one mode with their templates rendered, before kustomize builds it.
 * Runboat's modes often render the same kustomization (its `start` and `stop`): `key` tells.
 */
export interface Kustomization {
  /** The kubefiles directory. */
  dir: string;
  /** Each template's output, by its path in `dir` without `.jinja`. */
  rendered: Map<string, string>;
  /** The templates, by their paths in `dir`: what kustomize does not see. */
  templates: string[];
  /** Equal for kustomizations that build the same objects (while `dir` stays as it is). */
  key: string;
}

/** Renders the templates of a build's kubefiles for `mode`, in memory. */
export async function prepareKustomization(
  config: Config,
  build: BuildRef,
  mode: KubefilesMode,
  repo?: BuildRepoSettings,
): Promise<Kustomization> {
  // Name and slug reach names and host names: they must be the ones the commit gives.
  const { commit, slug } = buildRef(build.commit);
  if (!namesBuildOf(build.name, commit) || slug !== build.slug) {
    throw new UnsafeCommitInfoError(
      `build name ${JSON.stringify(build.name)} or slug does not match its commit`,
    );
  }
  const entry = findRepoSettings(config, commit.repo, commit.target_branch)?.builds[0];
  // Builds started by release v1 carry no settings: they render with today's entry.
  const settings = repo ?? entry;
  if (!settings)
    throw new KubefilesError(`${commit.repo} ${commit.target_branch} matches no RUNBOAT_REPOS entry`);
  const dir = settings.kubefiles_path ?? config.defaultKubefilesPath;
  const [imageName, imageTag] = splitImage(settings.image);
  const variables = {
    mode,
    namespace: config.buildNamespace,
    build_name: build.name,
    build_slug: build.slug,
    build_domain: config.buildDomain,
    commit_info: commit,
    image_name: imageName,
    image_tag: imageTag,
    build_env: { ...config.buildEnv, ...settings.env },
    // Secrets stay out of the workflow's history: always the worker's, of the entry if any.
    build_secret_env: { ...config.buildSecretEnv, ...entry?.secret_env },
    build_template_vars: { ...config.buildTemplateVars, ...settings.template_vars },
  };
  const { rendered, templates } = await renderTemplates(dir, variables);
  return { dir, rendered, templates, key: JSON.stringify([dir, [...rendered]]) };
}

/**
 * The objects kustomize builds from `kustomization`: its directory as it is, with the templates'
 * outputs in place of the templates, which the renderer lays over the directory in memory
 * (runboat copies the directory and renders in the copy: the same files, none written).
 */
export async function buildKustomization(
  config: Config,
  { dir, rendered, templates }: Kustomization,
): Promise<KubernetesObject[]> {
  try {
    return await kustomizeRenderer(config.kustomizeRenderer).build(dir, {
      files: Object.fromEntries(rendered),
      omit: templates,
    });
  } catch (error) {
    if (error instanceof KustomizeError) throw new KubefilesError(`kustomize failed: ${error.message}`);
    throw error;
  }
}

/**
 * A build carries its kubefiles path for life: one removed from the worker since cannot be
 * rendered again, which retrying will not fix.
 */
function gone(dir: string) {
  return (error: NodeJS.ErrnoException): never => {
    throw error.code === 'ENOENT' ? new KubefilesError(`kubefiles path ${dir} is gone`) : error;
  };
}

/** `registry/name:tag` → [`registry/name`, `tag`]; a port in the registry is not a tag. */
export function splitImage(image: string): [string, string] {
  const lastSlash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > lastSlash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest'];
}

async function renderTemplates(
  dir: string,
  variables: object,
): Promise<Pick<Kustomization, 'rendered' | 'templates'>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(gone(dir));
  const rendered = new Map<string, string>();
  const templates: string[] = [];
  for (const entry of entries) {
    if (!entry.name.endsWith('.jinja')) continue;
    const source = path.join(entry.parentPath, entry.name);
    // A ConfigMap mounted as a volume gives links to its files (`x.jinja` -> `..data/x.jinja`).
    if (!entry.isFile() && !(entry.isSymbolicLink() && (await isFile(source)))) continue;
    const relative = path.relative(dir, source);
    templates.push(relative);
    try {
      rendered.set(
        relative.slice(0, -'.jinja'.length),
        compiled(await readFile(source, 'utf8')).render(variables),
      );
    } catch (error) {
      throw new KubefilesError(`cannot render ${entry.name}: ${(error as Error).message}`);
    }
  }
  return { rendered, templates };
}

const isFile = (file: string) =>
  stat(file).then(
    (stats) => stats.isFile(),
    () => false,
  );

const COMPILED_TEMPLATES_KEPT = 100;
const compiledTemplates = new Map<string, nunjucks.Template>();

/** A template compiled once per source text: compiling cost as much as rendering it. */
function compiled(source: string): nunjucks.Template {
  let template = compiledTemplates.get(source);
  if (!template) {
    template = new nunjucks.Template(source, jinja, undefined, true);
    compiledTemplates.set(source, template);
    if (compiledTemplates.size > COMPILED_TEMPLATES_KEPT) {
      compiledTemplates.delete(compiledTemplates.keys().next().value as string);
    }
  }
  return template;
}
