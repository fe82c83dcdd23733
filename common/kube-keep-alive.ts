import type { OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { KubeConfig } from '@kubernetes/client-node';

// @kubernetes/client-node 1.x gives every API call a new HTTPS agent, hence a new connection
// and a TLS handshake with the client certificate on both sides: under a burst of builds that
// was most of the kube-apiserver's CPU per build and a good part of the worker's (README,
// "Performance (issue 10)"). Calls made through `withKeepAlive` share one keep-alive agent.

type Context = Parameters<KubeConfig['applySecurityAuthentication']>[0];

/** The TLS material that tells two agents apart: a new certificate or CA gets a new agent. */
const AGENT_KEY_OPTIONS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'rejectUnauthorized',
  'servername',
  'ciphers',
  'ecdhCurve',
  'crl',
  'secureProtocol',
] as const;

/**
 * A connection silent this long is closed: idle, or waiting for an answer that is not coming (a
 * kube-apiserver ends its own requests at 60 s, `--request-timeout`; past that, the connection
 * or the server is gone without a word). The call then fails and its activity is retried; without
 * it the call would wait for good, its activity heartbeating all the while.
 */
export const SOCKET_TIMEOUT_MS = 75_000;

/** A keep-alive agent that closes a socket silent for its `timeout`, answer awaited or not. */
class SilenceClosingAgent extends https.Agent {
  createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    const timeoutMs = this.options.timeout;
    socket?.on('timeout', () =>
      socket.destroy(new Error(`kube-apiserver connection silent for ${timeoutMs} ms: closed`)),
    );
    return socket;
  }
}

/**
 * `kubeConfig`, its API calls going over reused connections. Watches have an agent of their own,
 * without keep-alive: the client destroys a watch's socket when it ends, which must not touch
 * other calls' (`withSilenceLimit` bounds them instead).
 */
export function withKeepAlive(kubeConfig: KubeConfig, socketTimeoutMs = SOCKET_TIMEOUT_MS): KubeConfig {
  const agents = keptAliveAgents(socketTimeoutMs);
  const keepAlive = Object.create(kubeConfig) as KubeConfig;
  keepAlive.applySecurityAuthentication = async (context: Context) => {
    await kubeConfig.applySecurityAuthentication(context);
    const made = context.getAgent();
    // Plain HTTP and proxies stay as the client makes them.
    if (made?.constructor !== https.Agent) return;
    context.setAgent(agents.for(made as https.Agent));
  };
  return keepAlive;
}

/**
 * `kubeConfig` for watches: each watch's connection is closed once silent for `silenceMs`, its
 * answer's headers awaited or not. A watch is quiet while nothing changes, but the server ends it
 * at its `timeoutSeconds`: one silent past that has lost its server, and would otherwise wait for
 * good (the client's TCP keep-alive probes only find a peer that is gone, not one that hangs).
 */
export function withSilenceLimit(kubeConfig: KubeConfig, silenceMs: number): KubeConfig {
  const agents = new SharedAgent((options) => new SilenceClosingAgent({ ...options, timeout: silenceMs }));
  const limited = Object.create(kubeConfig) as KubeConfig;
  limited.applyToFetchOptions = async (options) => {
    const fetchOptions = await kubeConfig.applyToFetchOptions(options);
    const made = fetchOptions.agent;
    if (made?.constructor === https.Agent) fetchOptions.agent = agents.for(made as https.Agent);
    return fetchOptions;
  };
  return limited;
}

/**
 * One agent in place of the agents the client makes (one per call), while their TLS material
 * holds. Its connections share one TLS context (the certificates parsed once) and its cache of
 * TLS sessions, so that a new connection resumes one instead of a full handshake: every watch
 * opens a connection, and a burst opens more kept-alive ones. Per new connection to
 * kube-apiserver (`npm run bench:tls`): 3.1 → 2.0 ms of this process's CPU, 2.2 → 0.8 ms of the
 * server's.
 */
class SharedAgent {
  private shared?: { key: string; agent: https.Agent };

  constructor(private readonly make: (options: https.AgentOptions) => https.Agent) {}

  for(made: https.Agent): https.Agent {
    const options = made.options;
    const key = JSON.stringify(AGENT_KEY_OPTIONS.map((name) => String(options[name])));
    if (this.shared?.key !== key) {
      // First call, or rotated credentials: the old agent's connections close once idle.
      const secureContext = tls.createSecureContext(options);
      this.shared = { key, agent: this.make({ ...options, secureContext }) };
    }
    return this.shared.agent;
  }
}

const keptAliveAgents = (socketTimeoutMs: number) =>
  new SharedAgent(
    (options) => new SilenceClosingAgent({ ...options, keepAlive: true, timeout: socketTimeoutMs }),
  );

/**
 * How long `KeptAliveRequests` reuses the credentials it resolved. The client resolves them
 * anew for each call (token files and exec plugins rotate them), building an HTTPS agent each
 * time: 4% of the worker's main thread through a burst. A rotated token is read again within
 * this; the one it replaces stays valid far longer (a projected service account token is
 * rotated at 80% of its hour).
 */
export const CREDENTIALS_REUSED_MS = 10_000;

interface Credentials {
  agent: https.Agent;
  auth?: string | null;
  headers?: OutgoingHttpHeaders | readonly string[];
}

/** The answer of a call made by `KeptAliveRequests`: its status and body, read as text. */
export interface RawResponse {
  status: number;
  body: string;
}

/**
 * Calls whose answers need no typed model, over a kept-alive connection: the generated
 * clients' (de)serialization of every object, their rxjs middleware and node-fetch were most
 * of the worker's Kubernetes CPU, spent on server-side applies whose answer only tells success
 * (and on undeploy's lists and deletes, which need only metadata).
 * Undefined for a cluster reached otherwise than over plain HTTPS (a proxy), which the
 * generated clients keep serving.
 */
export function keptAliveRequests(
  kubeConfig: KubeConfig,
  socketTimeoutMs = SOCKET_TIMEOUT_MS,
  credentialsReusedMs = CREDENTIALS_REUSED_MS,
): KeptAliveRequests | undefined {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster?.server.startsWith('https://') || cluster.proxyUrl) return undefined;
  return new KeptAliveRequests(kubeConfig, cluster.server, socketTimeoutMs, credentialsReusedMs);
}

export class KeptAliveRequests {
  private readonly agents: SharedAgent;
  private credentials?: { until: number; resolved: Promise<Credentials> };

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly server: string,
    socketTimeoutMs = SOCKET_TIMEOUT_MS,
    private readonly credentialsReusedMs = CREDENTIALS_REUSED_MS,
  ) {
    this.agents = keptAliveAgents(socketTimeoutMs);
  }

  /** The client's credentials, resolved at most once per `credentialsReusedMs`. */
  private currentCredentials(): Promise<Credentials> {
    if (this.credentials && Date.now() < this.credentials.until) return this.credentials.resolved;
    const resolved = (async () => {
      const options: https.RequestOptions = {};
      await this.kubeConfig.applyToHTTPSOptions(options);
      return {
        agent: this.agents.for(options.agent as https.Agent),
        auth: options.auth,
        headers: options.headers,
      };
    })();
    this.credentials = { until: Date.now() + this.credentialsReusedMs, resolved };
    // A failure (a token file being replaced) is not kept: the next call resolves again.
    resolved.catch(() => {
      if (this.credentials?.resolved === resolved) this.credentials = undefined;
    });
    return resolved;
  }

  async send(
    method: string,
    path: string,
    body = '',
    contentType = 'application/json',
    accept = 'application/json',
  ): Promise<RawResponse> {
    const { agent, auth, headers } = await this.currentCredentials();
    const url = new URL(path, this.server);
    return new Promise((resolve, reject) => {
      const request = https.request(
        url,
        {
          method,
          agent,
          auth,
          headers: { ...headers, 'content-type': contentType, accept },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', reject);
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  }
}
