import type { KubernetesObject } from '@kubernetes/client-node';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { logger } from '../common/logger';

// `kubectl kustomize DIR` without a process per render: one kustomize-renderer process
// (scripts/kustomize-renderer, kustomize's Go module) per worker process, started at the first
// render, fed directories over stdin and answering over stdout, requests matched by id. If it
// dies, the next render starts another, and the requests it held are sent to that one once.
// It answers with the objects as JSON, not the YAML text kubectl prints from that JSON: parsing
// YAML took a tenth of the worker's main thread in a burst, JSON.parse next to nothing.

const TIMEOUT_MS = 60_000;
const ATTEMPTS = 2;

/** kustomize refused the kustomization; the message is the one `kubectl kustomize` prints. */
export class KustomizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KustomizeError';
  }
}

/** Files laid over a kustomization directory for one build, none written (the worker's templates). */
export interface Overlay {
  /** Contents by path in the directory, in place of what is there. */
  files: Record<string, string>;
  /** Paths in the directory that kustomize does not see. */
  omit: string[];
}

interface Request {
  dir: string;
  overlay?: Overlay;
  attempts: number;
  child?: ChildProcessWithoutNullStreams;
  timer?: NodeJS.Timeout;
  resolve: (objects: KubernetesObject[]) => void;
  reject: (error: Error) => void;
}

interface Response {
  id: number | null;
  objects?: KubernetesObject[];
  error?: string;
}

export class KustomizeRenderer {
  private child?: ChildProcessWithoutNullStreams;
  private readonly requests = new Map<number, Request>();
  private nextId = 1;

  constructor(
    readonly command: string,
    private readonly timeoutMs = TIMEOUT_MS,
  ) {}

  /** The process id of the running renderer, if one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The objects `kubectl kustomize dir` prints, in its order, for `dir` with `overlay` laid over it. */
  build(dir: string, overlay?: Overlay): Promise<KubernetesObject[]> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.requests.set(id, { dir, overlay, attempts: 0, resolve, reject });
      this.send(id);
    });
  }

  /**
   * Starts the process and has it build a one-object kustomization, so that a worker's first
   * build does not wait for the process to start and for kustomize's first-use work.
   */
  async warmUp(): Promise<void> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'runboat-renderer-warm-up-'));
    try {
      await writeFile(
        path.join(dir, 'kustomization.yaml'),
        'configMapGenerator:\n  - name: warm-up\n    literals: [warm=up]\n',
      );
      await this.build(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Lets the renderer answer what it holds, then stops it; a later build starts another. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const closed = new Promise((resolve) => child.once('close', resolve));
    child.stdin.end();
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await closed;
    clearTimeout(kill);
  }

  private send(id: number): void {
    const request = this.requests.get(id)!;
    const child = this.running();
    request.attempts++;
    request.child = child;
    request.timer = setTimeout(() => {
      this.settle(id, new KustomizeError(`no result after ${this.timeoutMs / 1000} s`));
      // Renders are answered in order: the oldest request is the one that hangs.
      child.kill('SIGKILL');
    }, this.timeoutMs);
    keepAlive(child, true);
    child.stdin.write(`${JSON.stringify({ id, dir: request.dir, ...request.overlay })}\n`);
  }

  private settle(id: number, result: KubernetesObject[] | Error): void {
    const request = this.requests.get(id);
    if (!request) return;
    clearTimeout(request.timer);
    this.requests.delete(id);
    if (result instanceof Error) request.reject(result);
    else request.resolve(result);
    const child = request.child!;
    if (![...this.requests.values()].some((other) => other.child === child)) keepAlive(child, false);
  }

  private running(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn(this.command, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    let stderrTail: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => this.onResponse(child, line));
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderrTail = [...stderrTail.slice(-9), line];
      logger.debug({ kustomizeRenderer: child.pid }, line);
    });
    // A write to a renderer that died fails here; its exit handler resends what it held.
    child.stdin.on('error', () => undefined);
    child.on('error', (error) => this.onExit(child, error, stderrTail));
    // 'close', not 'exit': the answers it wrote before exiting are read by then.
    child.on('close', (code, signal) =>
      this.onExit(child, new Error(`exited with ${signal ?? `code ${code}`}`), stderrTail),
    );
    return child;
  }

  private onResponse(child: ChildProcessWithoutNullStreams, line: string): void {
    let response: Response;
    try {
      response = JSON.parse(line) as Response;
    } catch {
      logger.error({ kustomizeRenderer: child.pid }, `kustomize-renderer wrote ${line.slice(0, 200)}`);
      return;
    }
    if (response.id === null) logger.error({ kustomizeRenderer: child.pid }, response.error ?? line);
    else if (response.error !== undefined) this.settle(response.id, new KustomizeError(response.error));
    else if (response.objects !== undefined) this.settle(response.id, response.objects);
    else {
      // An older renderer (YAML answers): applying nothing would look like success.
      this.settle(
        response.id,
        new Error(
          `kustomize-renderer at ${this.command} answered without objects: it predates this worker (rebuild it: scripts/provision.sh kustomize-renderer)`,
        ),
      );
    }
  }

  /** Sends what a renderer held to a new one, once; 'error' and 'close' may both come. */
  private onExit(
    child: ChildProcessWithoutNullStreams,
    reason: NodeJS.ErrnoException,
    stderr: string[],
  ): void {
    if (this.child === child) this.child = undefined;
    const held = [...this.requests].filter(([, request]) => request.child === child);
    if (held.length === 0) return;
    if (reason.code === 'ENOENT') {
      const error = new Error(
        `kustomize-renderer not found at ${this.command} (set RUNBOAT_KUSTOMIZE_RENDERER; scripts/provision.sh builds it)`,
      );
      for (const [id] of held) this.settle(id, error);
      return;
    }
    const why = `kustomize-renderer ${[reason.message, ...stderr].join('\n')}`;
    logger.warn({ kustomizeRenderer: child.pid, held: held.length }, why);
    for (const [id, request] of held) {
      if (request.attempts < ATTEMPTS) {
        clearTimeout(request.timer);
        this.send(id);
      } else {
        this.settle(id, new Error(why));
      }
    }
  }
}

/** An idle renderer does not keep the Node process alive; one with requests does. */
function keepAlive(child: ChildProcessWithoutNullStreams, alive: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as { ref(): void; unref(): void }[]) {
    if (alive) handle.ref();
    else handle.unref();
  }
}

const renderers = new Map<string, KustomizeRenderer>();

/** This process's renderer for `command` (the worker's `RUNBOAT_KUSTOMIZE_RENDERER`). */
export function kustomizeRenderer(command: string): KustomizeRenderer {
  let renderer = renderers.get(command);
  if (!renderer) {
    renderer = new KustomizeRenderer(command);
    renderers.set(command, renderer);
  }
  return renderer;
}

/** Stops this process's renderers, as the worker shuts down. */
export async function closeKustomizeRenderers(): Promise<void> {
  await Promise.all([...renderers.values()].map((renderer) => renderer.close()));
}
