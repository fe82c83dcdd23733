import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Connection } from '@temporalio/client';
import { temporal as temporalProto } from '@temporalio/proto';
import { freePort, spawnService } from './processes';

// The service as deployed, for the scripts that measure it (`npm run bench`, `npm run fuzz`):
// a worker process and an API process on a loopback port, each logging to a file of its own.

export interface ServiceProcesses {
  worker: ChildProcess;
  api: ChildProcess;
  apiUrl: string;
  /** SIGTERM to both, resolved once both exited. */
  stop(): Promise<void>;
  /** SIGTERM to the worker, then a new worker process (now `worker`), resolved once it polls. */
  restartWorker(): Promise<ChildProcess>;
}

export interface ServiceOptions {
  /** Where `worker.log` and `api.log` go. */
  logDir: string;
  /** The service's environment (RUNBOAT_*, TEMPORAL_ADDRESS, KUBECONFIG...), over this process's. */
  env: Record<string, string>;
  /** Used to wait for the worker's pollers on `env.RUNBOAT_TASK_QUEUE`. */
  connection: Connection;
  /** Node options of the API process only (a measurement hook, say). */
  apiNodeArgs?: string[];
}

/** Starts both processes and resolves once the worker polls and the API answers /readyz. */
export async function startServiceProcesses(options: ServiceOptions): Promise<ServiceProcesses> {
  const apiPort = await freePort();
  const children: ChildProcess[] = [];
  const startProcess = (name: string, entry: string, nodeArgs: readonly string[] = []) => {
    const child = spawnService(
      entry,
      { ...process.env, ...options.env, PORT: String(apiPort) },
      { logFile: path.join(options.logDir, `${name}.log`), nodeArgs },
    );
    children.push(child);
    return child;
  };
  const startWorker = () => startProcess('worker', 'worker/main.ts');
  let worker = startWorker();
  const api = startProcess('api', 'api/main.ts', options.apiNodeArgs);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const exited = (child: ChildProcess) =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    const all = children.map(exited);
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(all);
  };
  // Measure the service, not its start-up: wait until the worker polls and the API is ready.
  const untilReady = async () => {
    for (;;) {
      const { pollers } = await options.connection.workflowService.describeTaskQueue({
        namespace: options.env.TEMPORAL_NAMESPACE ?? 'default',
        taskQueue: { name: options.env.RUNBOAT_TASK_QUEUE },
        taskQueueType: temporalProto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
      });
      const apiReady = await fetch(`${apiUrl}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (pollers?.some(({ identity }) => identity?.startsWith(`${worker.pid}@`)) && apiReady) return;
      if (worker.exitCode !== null || api.exitCode !== null)
        throw new Error(`the worker or the API exited; see ${options.logDir}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  try {
    await untilReady();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    get worker() {
      return worker;
    },
    api,
    apiUrl,
    stop,
    async restartWorker() {
      const old = worker;
      old.kill('SIGTERM');
      await exited(old);
      children.splice(children.indexOf(old), 1);
      worker = startWorker();
      await untilReady();
      return worker;
    },
  };
}
