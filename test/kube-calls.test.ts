import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildCluster, BUILD_OBJECT_KINDS } from '../activities/kubernetes';
import { kubeConfig, waitFor } from './helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// What BuildCluster's API calls cost the kube-apiserver, without losing what they guarantee:
// calls share kept-alive connections (activities/kube-keep-alive.ts), and only objects the
// server has not accepted before are dry-run, so that a broken set still creates nothing.

describe('Kubernetes API calls over kept-alive connections', () => {
  let proxy: TcpProxy;
  let cluster: BuildCluster;

  beforeAll(async () => {
    const direct = kubeConfig();
    proxy = await startTcpProxy(new URL(direct.getCurrentCluster()!.server).host);
    const proxied = new KubeConfig();
    proxied.loadFromOptions({
      clusters: direct.clusters.map((c) => ({ ...c, server: `https://${proxy.address}` })),
      users: direct.users,
      contexts: direct.contexts,
      currentContext: direct.currentContext,
    });
    cluster = new BuildCluster(proxied, 'keep-alive');
  });

  afterAll(() => proxy.close());

  it('reuses connections across calls', async () => {
    for (let i = 0; i < 5; i++) await cluster.listBuildObjects('nothing-here');
    // Each listing is a call per kind, made at once: at most that many connections in all, where
    // a connection per call made five times as many.
    expect(proxy.connections).toBeGreaterThan(0);
    expect(proxy.connections).toBeLessThanOrEqual(BUILD_OBJECT_KINDS.length);
  });

  it('opens new connections once the kept ones were dropped', async () => {
    const before = proxy.connections;
    proxy.cut();
    proxy.restore();
    // A call racing the drop may fail (activities retry); the calls after it go through.
    const listed = await waitFor('a listing after the drop', () =>
      cluster.listBuildObjects('nothing-here').catch(() => undefined),
    );
    expect(listed).toEqual([]);
    expect(proxy.connections).toBeGreaterThan(before);
  });
});
