import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { stringify } from 'yaml';
import { binary } from './paths';
import { freePort, startDaemon, waitUntil, type Daemon } from './processes';

// A real Kubernetes control plane on loopback, in the manner of controller-runtime's envtest:
// etcd plus kube-apiserver, with RBAC on, so that tests talk to the same API a cluster serves.

export interface ControlPlane {
  server: string;
  kubeconfigPath: string;
  /** Holds the service-account signing key (`sa.key`) and the serving cert (`apiserver.crt`). */
  pkiDir: string;
  /** Its processes (etcd, kube-apiserver, and the simulated cluster's), for the benchmark's accounting. */
  daemons: Daemon[];
  /** etcd's data folder, whose size the benchmark reports. */
  etcdDataDir: string;
  /**
   * Kills kube-apiserver (SIGKILL, a crash) and starts it again on the same port, certificates
   * and tokens, so that every client's kubeconfig still holds: `npm run chaos` checks that the
   * service and the controllers come back by themselves.
   */
  restartApiServer(): Promise<void>;
  stop(): Promise<void>;
}

export async function startControlPlane(workDir: string): Promise<ControlPlane> {
  mkdirSync(workDir, { recursive: true });
  const daemons: Daemon[] = [];
  const stop = async () => {
    for (const daemon of daemons.reverse()) await daemon.stop();
  };
  try {
    const etcdUrl = await startEtcd(workDir, daemons);
    const { server, token, caData, restart } = await startApiServer(workDir, etcdUrl, daemons);
    const kubeconfigPath = path.join(workDir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfig(server, token, caData), { mode: 0o600 });
    return {
      server,
      kubeconfigPath,
      pkiDir: path.join(workDir, 'pki'),
      daemons,
      etcdDataDir: path.join(workDir, 'etcd-data'),
      restartApiServer: restart,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function startEtcd(workDir: string, daemons: Daemon[]): Promise<string> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const logFile = path.join(workDir, 'etcd.log');
  const etcd = startDaemon(
    'etcd',
    binary('etcd'),
    [
      `--data-dir=${path.join(workDir, 'etcd-data')}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      '--log-level=warn',
      // Test data is thrown away: skipping fsync makes the control plane several times faster.
      '--unsafe-no-fsync',
    ],
    logFile,
  );
  daemons.push(etcd);
  // Each check bounded: an etcd that accepts connections but cannot serve (its data folder
  // locked by another etcd) must not hang the start-up.
  const healthy = async () => (await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2_000) })).ok;
  await waitUntil('etcd /health', healthy, {
    timeoutMs: 30_000,
    daemon: etcd,
    logFile,
  });
  return clientUrl;
}

async function startApiServer(workDir: string, etcdUrl: string, daemons: Daemon[]) {
  const port = await freePort();
  const certDir = path.join(workDir, 'pki');
  mkdirSync(certDir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(path.join(certDir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(path.join(certDir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  const token = randomBytes(24).toString('hex');
  writeFileSync(path.join(certDir, 'tokens.csv'), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
  const logFile = path.join(workDir, 'kube-apiserver.log');
  const server = `https://127.0.0.1:${port}`;
  const args = [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    // With no serving cert given, kube-apiserver generates a self-signed one in --cert-dir
    // (and keeps it there: a restart serves the same one).
    `--cert-dir=${certDir}`,
    `--token-auth-file=${path.join(certDir, 'tokens.csv')}`,
    '--authorization-mode=RBAC',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${path.join(certDir, 'sa.pub')}`,
    `--service-account-signing-key-file=${path.join(certDir, 'sa.key')}`,
    '--service-cluster-ip-range=10.96.0.0/16',
    // No controller-manager runs here to create service accounts' tokens or to lift the
    // pvc-protection finalizer, so the admission plugins that rely on it are off.
    '--disable-admission-plugins=ServiceAccount,StorageObjectInUseProtection',
  ];
  const launch = async (): Promise<Daemon> => {
    const apiserver = startDaemon('kube-apiserver', binary('kube-apiserver'), args, logFile);
    daemons.push(apiserver);
    await waitUntil('kube-apiserver /readyz', () => httpsOk(`${server}/readyz`, token), {
      timeoutMs: 90_000,
      daemon: apiserver,
      logFile,
    });
    return apiserver;
  };
  let apiserver = await launch();
  const restart = async () => {
    apiserver.process.kill('SIGKILL');
    await apiserver.stop();
    daemons.splice(daemons.indexOf(apiserver), 1);
    apiserver = await launch();
  };
  const caData = readFileSync(path.join(certDir, 'apiserver.crt')).toString('base64');
  return { server, token, caData, restart };
}

function httpsOk(url: string, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = https.get(
      url,
      { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    request.on('error', () => resolve(false));
    request.setTimeout(2_000, () => request.destroy());
  });
}

function kubeconfig(server: string, token: string, caData: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': caData } }],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: 'admin' } }],
    'current-context': 'local',
  });
}
