import os from 'node:os';
import path from 'node:path';

/** The folder `scripts/provision.sh` installs into (same rule as the script). */
export const cacheDir =
  process.env.RUNBOAT_CACHE_DIR ??
  path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'runboat-temporal');

export const binary = (name: string): string => path.join(cacheDir, 'bin', name);
