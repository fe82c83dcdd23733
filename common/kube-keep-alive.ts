import https from 'node:https';
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
] as const;

/** An idle connection is closed after this long (the agent's timeout applies to free sockets). */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * `kubeConfig`, its API calls going over reused connections. Watches keep their own agents: the
 * client destroys a watch's sockets when it ends, which must not touch other calls'.
 */
export function withKeepAlive(kubeConfig: KubeConfig): KubeConfig {
  let shared: { key: string; agent: https.Agent } | undefined;
  const keepAlive = Object.create(kubeConfig) as KubeConfig;
  keepAlive.applySecurityAuthentication = async (context: Context) => {
    await kubeConfig.applySecurityAuthentication(context);
    const made = context.getAgent();
    // Plain HTTP and proxies stay as the client makes them.
    if (made?.constructor !== https.Agent) return;
    const options = (made as https.Agent).options;
    const key = JSON.stringify(AGENT_KEY_OPTIONS.map((name) => String(options[name])));
    if (shared?.key !== key) {
      // First call, or rotated credentials: the old agent's connections close once idle.
      shared = { key, agent: new https.Agent({ ...options, keepAlive: true, timeout: IDLE_TIMEOUT_MS }) };
    }
    context.setAgent(shared.agent);
  };
  return keepAlive;
}
