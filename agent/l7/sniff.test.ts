// Protocol sniffing on real loopback sockets: the HTTP/2 preface (also when it arrives in pieces),
// HTTP/1.x, a client that leaves without a byte; the bytes read are there for the next reader.
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { H2_PREFACE, sniffProtocol } from './sniff.ts';
import { LOOPBACK, listen } from './test-fixtures.ts';

/** A connected pair: what the test writes on `client` arrives on `server`. */
async function socketPair(t: Test): Promise<{ client: net.Socket; server: net.Socket }> {
  const listener = net.createServer();
  const port = await listen(t, listener);
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ host: LOOPBACK, port });
  const [server] = await accepted;
  t.teardown(() => {
    client.destroy();
    server.destroy();
  });
  return { client, server };
}

const readAll = async (socket: net.Socket, bytes: number): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  let length = 0;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
  });
  socket.resume();
  while (length < bytes) await sleep(2);
  return Buffer.concat(chunks);
};

t.test('the HTTP/2 preface, even in pieces, is h2; the bytes stay readable', async (t) => {
  const { client, server } = await socketPair(t);
  const sniffed = sniffProtocol(server);
  client.write(H2_PREFACE.subarray(0, 5));
  await sleep(20);
  client.write(H2_PREFACE.subarray(5, 17));
  await sleep(20);
  client.write(Buffer.concat([H2_PREFACE.subarray(17), Buffer.from('frames')]));
  t.equal(await sniffed, 'h2');
  t.equal(server.isPaused(), true, 'left paused for the next reader');
  const data = await readAll(server, H2_PREFACE.length + 6);
  t.same(data, Buffer.concat([H2_PREFACE, Buffer.from('frames')]), 'nothing lost, nothing reordered');
});

t.test('anything else is HTTP/1.x, decided on the first byte that differs', async (t) => {
  const { client, server } = await socketPair(t);
  const sniffed = sniffProtocol(server);
  client.write('PRI * HTTP/1.1\r\n');
  t.equal(await sniffed, 'http/1.1');
  t.same(await readAll(server, 16), Buffer.from('PRI * HTTP/1.1\r\n'));
});

t.test('a client that leaves before saying anything', async (t) => {
  const { client, server } = await socketPair(t);
  const sniffed = sniffProtocol(server);
  client.end();
  t.equal(await sniffed, 'closed');
});
