import net from 'node:net';

/** A loopback TCP proxy that a test can cut and restore: a backend outage, on demand. */
export interface TcpProxy {
  address: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Drops every connection and refuses new ones until `restore`. */
  cut(): void;
  /** Forwards nothing more, on open connections as on new ones, which it takes: a backend that hangs. */
  stall(): void;
  /** Holds every answer, on open connections as on new ones, until `release`: a slow backend. */
  hold(): void;
  release(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, port] = [
    target.slice(0, target.lastIndexOf(':')),
    Number(target.slice(target.lastIndexOf(':') + 1)),
  ];
  const sockets = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  let open = true;
  let stalled = false;
  let held = false;
  let connections = 0;
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    connections++;
    if (stalled) {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      client.on('error', () => undefined);
      return;
    }
    const upstream = net.connect(port, host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream);
    if (!held) upstream.pipe(client);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.on('close', () => pairs.delete(pair));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get connections() {
      return connections;
    },
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    stall() {
      stalled = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
      }
    },
    hold() {
      held = true;
      for (const [client, upstream] of pairs) upstream.unpipe(client);
    },
    release() {
      held = false;
      for (const [client, upstream] of pairs) upstream.pipe(client);
    },
    restore() {
      open = true;
      stalled = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
