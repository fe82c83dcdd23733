import { cp, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import nunjucks from 'nunjucks';
import { parseAllDocuments } from 'yaml';
import { buildRef, UnsafeCommitInfoError } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import type { BuildRef, BuildRepoSettings, KubefilesMode } from '../common/types';
import { KustomizeError, kustomizeRenderer } from './kustomize';

// Turns a kubefiles directory (runboat's format) into the plain objects of one mode.
// Knows nothing of Odoo: what is deployed lives entirely in the directory.

// Python-style `dict.items()` and friends, which runboat's templates use.
nunjucks.installJinjaCompat();
const templates = new nunjucks.Environment(null, { autoescape: false });

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
  const dir = await renderKustomization(config, build, mode, repo);
  try {
    return parseObjects(await kustomize(config.kustomizeRenderer, dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The kubefiles of a build's mode with their templates rendered: a kustomize directory in a
 * scratch folder, which the caller removes.
 */
export async function renderKustomization(
  config: Config,
  build: BuildRef,
  mode: KubefilesMode,
  repo?: BuildRepoSettings,
): Promise<string> {
  // Name and slug reach names and host names: they must be the ones the commit gives.
  const { commit, name, slug } = buildRef(build.commit);
  if (name !== build.name || slug !== build.slug) {
    throw new UnsafeCommitInfoError(
      `build name ${JSON.stringify(build.name)} or slug does not match its commit`,
    );
  }
  const entry = findRepoSettings(config, commit.repo, commit.target_branch)?.builds[0];
  // Builds started by release v1 carry no settings: they render with today's entry.
  const settings = repo ?? entry;
  if (!settings)
    throw new KubefilesError(`${commit.repo} ${commit.target_branch} matches no RUNBOAT_REPOS entry`);
  const kubefiles = settings.kubefiles_path ?? config.defaultKubefilesPath;
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
  const scratch = await mkdtemp(path.join(os.tmpdir(), `runboat-${build.name}-${mode}-`));
  try {
    await cp(kubefiles, scratch, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
      // A build carries its kubefiles path for life: one removed from the worker since cannot
      // be rendered again, which retrying will not fix.
      throw error.code === 'ENOENT' ? new KubefilesError(`kubefiles path ${kubefiles} is gone`) : error;
    });
    await renderTemplates(scratch, variables);
    return scratch;
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
}

/** `registry/name:tag` → [`registry/name`, `tag`]; a port in the registry is not a tag. */
export function splitImage(image: string): [string, string] {
  const lastSlash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > lastSlash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest'];
}

async function renderTemplates(dir: string, variables: object): Promise<void> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const entry of entries.filter((e) => e.isFile() && e.name.endsWith('.jinja'))) {
    const source = path.join(entry.parentPath, entry.name);
    let rendered: string;
    try {
      rendered = templates.renderString(await readFile(source, 'utf8'), variables);
    } catch (error) {
      throw new KubefilesError(`cannot render ${entry.name}: ${(error as Error).message}`);
    }
    await writeFile(source.slice(0, -'.jinja'.length), rendered);
    await unlink(source);
  }
}

async function kustomize(renderer: string, dir: string): Promise<string> {
  try {
    return await kustomizeRenderer(renderer).build(dir);
  } catch (error) {
    if (error instanceof KustomizeError) throw new KubefilesError(`kustomize failed: ${error.message}`);
    throw error;
  }
}

function parseObjects(stream: string): KubernetesObject[] {
  return parseAllDocuments(stream).flatMap((document) => {
    if (document.errors.length) throw new KubefilesError(`kustomize output: ${document.errors[0].message}`);
    const object = document.toJS() as KubernetesObject | null;
    return object ? [object] : [];
  });
}
