// relay() on real loopback sockets: bytes both ways, half-close carried across, resets carried
// across, idle connections reset, and the outcome reported once.
import t, { type Test } from 'tap';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { relay, type RelayOutcome } from './relay.ts';

/** A downstream pair (client ↔ accepted) and an upstream pair (agent-side ↔ server). */
async function pairs(t: Test): Promise<{ client: Socket; down: Socket; up: Socket; server: Socket }> {
  const pair = async () => {
    const srv = createServer({ allowHalfOpen: true });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = new Promise<Socket>((r) => srv.once('connection', r));
    const dialer = connect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    const a = await accepted;
    t.teardown(() => {
      dialer.destroy();
      a.destroy();
      srv.close();
    });
    return { dialer, accepted: a };
  };
  const d = await pair();
  const u = await pair();
  return { client: d.dialer, down: d.accepted, up: u.dialer, server: u.accepted };
}

const read = (s: Socket) =>
  new Promise<string>((resolve) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (buf += c));
    s.once('end', () => resolve(buf));
  });

t.test('bytes flow both ways and a FIN travels as a FIN, each direction on its own', async (t) => {
  const { client, down, up, server } = await pairs(t);
  const outcome = new Promise<RelayOutcome>((r) => relay(down, up, r, 0));
  const atServer = read(server);
  client.end('hello');
  t.equal(await atServer, 'hello', 'the server got the data and then the client FIN');
  const atClient = read(client);
  server.write('world, still open after your FIN');
  server.end();
  t.equal(await atClient, 'world, still open after your FIN', 'the half-closed connection still carried the answer');
  const o = await outcome;
  t.equal(o.received, 5);
  t.equal(o.sent, 'world, still open after your FIN'.length);
  t.equal(o.error, '');
});

t.test('a reset upstream becomes a reset downstream, reported as an error', async (t) => {
  const { client, down, up, server } = await pairs(t);
  const outcome = new Promise<RelayOutcome>((r) => relay(down, up, r, 0));
  const clientError = new Promise<NodeJS.ErrnoException>((r) => client.once('error', r));
  server.resetAndDestroy();
  t.equal((await clientError).code, 'ECONNRESET', 'the client sees a reset, not a clean end');
  t.match((await outcome).error, /upstream/);
});

t.test('a connection idle in both directions is reset after the idle timeout', async (t) => {
  const { client, down, up } = await pairs(t);
  const started = Date.now();
  const outcome = new Promise<RelayOutcome>((r) => relay(down, up, r, 300));
  const clientError = new Promise<NodeJS.ErrnoException>((r) => client.once('error', r));
  t.equal((await clientError).code, 'ECONNRESET');
  const o = await outcome;
  t.match(o.error, /idle/);
  t.ok(Date.now() - started >= 290, 'not before the timeout');
});
