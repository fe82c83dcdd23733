import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CoreV1Api, KubeConfig, makeInformer, type V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from './control-plane';
import { binary } from './paths';
import { freePort, startDaemon, waitUntil, type Daemon } from './processes';

// A small real cluster for the local run: the test control plane plus kube-controller-manager
// and kube-scheduler, and kwok simulating nodes (pods become Ready, Job pods complete), so that
// Deployments report ready replicas and Jobs succeed or fail with no test writing status.

const NODES = 3;

/**
 * The controller-manager's requests per second to kube-apiserver, all its controllers together
 * (its default is 20, burst 30). At the default, a burst of 100 builds (~20 controller requests
 * each: ReplicaSets, pods, Job and Deployment status) queued in the controller-manager's own
 * client: the last init Job succeeded 40 s in, the last build was ready 52 s in, whatever the
 * service did. Clusters that run many workloads raise it; the simulated cluster stands for one
 * whose controllers keep up, so that the bench measures the service and not this throttle.
 */
export const CONTROLLER_MANAGER_QPS = { qps: 500, burst: 1000 };

export async function startSimulatedCluster(
  workDir: string,
  { nodes = NODES }: { nodes?: number } = {},
): Promise<ControlPlane> {
  const controlPlane = await startControlPlane(workDir);
  const daemons: Daemon[] = [];
  let provisioner: VolumeProvisioner | undefined;
  const stop = async () => {
    await provisioner?.stop();
    for (const daemon of daemons.reverse()) await daemon.stop();
    await controlPlane.stop();
  };
  try {
    const kubeconfig = `--kubeconfig=${controlPlane.kubeconfigPath}`;
    const kubeletPort = await freePort();
    const serving = ['--leader-elect=false', '--bind-address=127.0.0.1', '--secure-port=0'];
    daemons.push(
      startDaemon(
        'kube-controller-manager',
        binary('kube-controller-manager'),
        [
          kubeconfig,
          ...serving,
          `--service-account-private-key-file=${path.join(controlPlane.pkiDir, 'sa.key')}`,
          `--root-ca-file=${path.join(controlPlane.pkiDir, 'apiserver.crt')}`,
          '--use-service-account-credentials=false',
          `--kube-api-qps=${CONTROLLER_MANAGER_QPS.qps}`,
          `--kube-api-burst=${CONTROLLER_MANAGER_QPS.burst}`,
        ],
        path.join(workDir, 'kube-controller-manager.log'),
      ),
      startDaemon(
        'kube-scheduler',
        binary('kube-scheduler'),
        [kubeconfig, ...serving],
        path.join(workDir, 'kube-scheduler.log'),
      ),
      startDaemon(
        'kwok',
        binary('kwok'),
        [
          kubeconfig,
          `--config=${writeKwokConfig(workDir)}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          // kwok renews the fake nodes' Leases, their heartbeat: without it the node lifecycle
          // controller marks every node, and so every pod, not ready after its grace period
          // (about a minute), and kwok makes a pod ready only once; builds then never start.
          '--node-lease-duration-seconds=40',
          // The kubelet API of the fake nodes: kube-apiserver fetches pod logs from it.
          '--node-ip=127.0.0.1',
          `--node-port=${kubeletPort}`,
          `--server-address=127.0.0.1:${kubeletPort}`,
        ],
        path.join(workDir, 'kwok.log'),
      ),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(controlPlane.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    await createFakeNodes(core, nodes);
    await waitUntil(
      'kwok nodes to be Ready',
      async () => {
        const { items } = await core.listNode();
        return (
          items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
            .length >= nodes
        );
      },
      { timeoutMs: 60_000, daemon: daemons[2], logFile: path.join(workDir, 'kwok.log') },
    );
    provisioner = await provisionVolumes(kc, core);
    return { ...controlPlane, daemons: [...controlPlane.daemons, ...daemons], stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * kwok's configuration: our stages, and logs for the init job's and Odoo's containers (served
 * through the fake nodes' kubelet API), so that the init log can be read and kept as on a real
 * cluster. Log files need absolute paths, hence a file written at start.
 */
function writeKwokConfig(workDir: string): string {
  const kwokDir = path.join(__dirname, 'kwok');
  const logs = (name: string, container: string) => `---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: ${name}
spec:
  selector: {}
  logs:
    - containers: [${container}]
      logsFile: ${path.join(kwokDir, `${container}.log`)}
`;
  const file = path.join(workDir, 'kwok.yaml');
  const stages = readFileSync(path.join(kwokDir, 'stages.yaml'), 'utf8');
  writeFileSync(file, stages + logs('init-logs', 'initialize') + logs('odoo-logs', 'odoo'));
  return file;
}

/**
 * Creates the fake nodes, or on a restart over the same state folder marks the existing ones
 * not ready: kwok's node stage then runs again and records this run's kubelet port, without
 * which kube-apiserver would fetch pod logs from the previous run's port.
 */
async function createFakeNodes(core: CoreV1Api, nodes: number): Promise<void> {
  for (let i = 0; i < nodes; i++) {
    const created = await core
      .createNode({
        body: {
          metadata: {
            name: `kwok-node-${i}`,
            annotations: { 'kwok.x-k8s.io/node': 'fake' },
            labels: { type: 'kwok', 'kubernetes.io/hostname': `kwok-node-${i}` },
          },
          status: {
            allocatable: { cpu: '32', memory: '256Gi', pods: '110' },
            capacity: { cpu: '32', memory: '256Gi', pods: '110' },
          },
        },
      })
      .then(
        () => true,
        (error: { code?: number }) => {
          if (error.code !== 409) throw error;
          return false;
        },
      );
    if (!created) await markNotReady(core, `kwok-node-${i}`);
  }
}

async function markNotReady(core: CoreV1Api, name: string): Promise<void> {
  const node = await core.readNodeStatus({ name });
  const conditions = (node.status?.conditions ?? []).map((condition) =>
    condition.type === 'Ready' ? { ...condition, status: 'Unknown', reason: 'RunboatRestart' } : condition,
  );
  await core.replaceNodeStatus({ name, body: { ...node, status: { ...node.status, conditions } } });
}

interface VolumeProvisioner {
  stop(): Promise<void>;
}

/**
 * Plays a storage provisioner, as a real one does: it watches claims and gives each pending one
 * a volume of its own, bound to it, once. (It used to list every claim twice a second and post a
 * volume for each still pending until the PV controller bound it: 14 posts a claim in a burst,
 * the cluster's most made request.)
 */
async function provisionVolumes(kc: KubeConfig, core: CoreV1Api): Promise<VolumeProvisioner> {
  const provisioned = new Set<string>();
  let stopped = false;
  const provision = (claim: V1PersistentVolumeClaim) => {
    const { name, namespace, uid } = claim.metadata ?? {};
    if (!uid || claim.spec?.volumeName || claim.status?.phase !== 'Pending' || provisioned.has(uid)) return;
    provisioned.add(uid);
    core
      .createPersistentVolume({
        body: {
          metadata: { name: `pv-${uid}` },
          spec: {
            capacity: { storage: claim.spec?.resources?.requests?.storage ?? '1Gi' },
            accessModes: claim.spec?.accessModes ?? ['ReadWriteOnce'],
            persistentVolumeReclaimPolicy: 'Delete',
            storageClassName: claim.spec?.storageClassName ?? '',
            hostPath: { path: `/tmp/runboat-volumes/${uid}` },
            claimRef: { namespace, name, uid },
          },
        },
      })
      .catch((error: { code?: number }) => {
        if (error.code === 409) return;
        // Not made (the server busy or restarting): the claim's next change, or a second, retries.
        provisioned.delete(uid);
        if (!stopped) setTimeout(() => provision(claim), 1_000);
      });
  };
  const claims = makeInformer(kc, '/api/v1/persistentvolumeclaims', () =>
    core.listPersistentVolumeClaimForAllNamespaces(),
  );
  claims.on('add', provision);
  claims.on('update', provision);
  claims.on('delete', (claim) => provisioned.delete(claim.metadata?.uid ?? ''));
  // A watch that fails (the server restarting) lists and watches again.
  claims.on('error', () => {
    if (!stopped) setTimeout(() => void claims.start().catch(() => undefined), 1_000);
  });
  await claims.start();
  return {
    async stop() {
      stopped = true;
      await claims.stop();
    },
  };
}
