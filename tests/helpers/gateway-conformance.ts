// What the upstream Gateway API conformance suite (Mesh profile) needs from this machine: the
// suite's own test binary, and the echo image its mesh manifests run. Both are built from Go
// modules committed under tests/gateway-api/ (go.sum-verified, -mod=readonly, cached in
// $WEFT_CACHE/tools), so nothing comes from a registry at test time.
//
// The image: the suite deploys `registry.k8s.io/gateway-api/echo-advanced:<tag>` with
// imagePullPolicy IfNotPresent. Upstream that image is Istio's test "app" image (Istio's echo
// server and client, Istio's test certificate at /cert.crt and /cert.key). The Istio release
// upstream used (1.21.2) is not in the Go module proxy, so tests/gateway-api/echo pins the Istio
// commit the proxy does hold; the programs' flags and output format are what the suite drives.
// The image is tagged with the suite's own name, so the suite's manifests stay untouched.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildImage, type ImageSpec } from '../../playground/images.ts';
import { goTool } from './go-tool.ts';
import { REPO } from './playground.ts';

const run = promisify(execFile);
export const GATEWAY_API_MODULE = join(REPO, 'tests/gateway-api');
export const ECHO_MODULE = join(GATEWAY_API_MODULE, 'echo');
const goEnv = { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly' };

/** A module's directory in the module cache, downloaded (go.sum-verified) if it is not there. */
async function moduleDir(moduleRoot: string, path: string): Promise<string> {
  await run('go', ['mod', 'download', path], { cwd: moduleRoot, env: goEnv });
  const { stdout } = await run('go', ['list', '-m', '-f', '{{.Dir}}', path], { cwd: moduleRoot, env: goEnv });
  return stdout.trim();
}

/** The echo image reference the suite's mesh manifests name (read from the pinned suite, so a new pin follows). */
export async function suiteEchoImage(): Promise<string> {
  const dir = await moduleDir(GATEWAY_API_MODULE, 'sigs.k8s.io/gateway-api/conformance');
  const manifests = await readFile(join(dir, 'mesh/manifests.yaml'), 'utf8');
  const refs = new Set([...manifests.matchAll(/image:\s*(\S+)/g)].map((m) => m[1] ?? ''));
  if (refs.size !== 1) throw new Error(`expected one image in the suite's mesh manifests, found ${[...refs].join(', ') || 'none'}`);
  return [...refs][0] as string;
}

/** Builds (or finds cached) the echo server and client and the image; returns the image tarball. */
export async function echoAdvancedImage(ref?: string): Promise<{ tarball: string; ref: string }> {
  const image = ref ?? (await suiteEchoImage());
  const server = await goTool(ECHO_MODULE, 'istio.io/istio/pkg/test/echo/cmd/server', 'istio-echo-server');
  const client = await goTool(ECHO_MODULE, 'istio.io/istio/pkg/test/echo/cmd/client', 'istio-echo-client');
  const certs = join(await moduleDir(ECHO_MODULE, 'istio.io/istio'), 'tests/testdata/certs/dns');
  const spec: ImageSpec = {
    ref: image,
    files: [
      { src: server, dest: 'usr/local/bin/server' },
      { src: client, dest: 'usr/local/bin/client' },
      // The suite's manifests pass --crt=/cert.crt --key=/cert.key for the TLS port.
      { src: join(certs, 'cert-chain.pem'), dest: 'cert.crt' },
      { src: join(certs, 'key.pem'), dest: 'cert.key' },
    ],
    dirs: ['tmp', 'proc', 'sys', 'dev', 'etc'],
    texts: [
      { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napplication:x:1338:1338::/home/application:/bin/sh\n' },
      { path: 'etc/group', content: 'root:x:0:\napplication:x:1338:\n' },
      { path: 'etc/nsswitch.conf', content: 'hosts: files dns\n' },
    ],
    entrypoint: ['/usr/local/bin/server'],
    // As upstream: the application runs unprivileged.
    user: '1338',
  };
  return { tarball: await buildImage(spec), ref: image };
}

/** The suite's test binary (its TestConformance, unmodified), built from the pinned module. */
export function conformanceBinary(): Promise<string> {
  return goTool(GATEWAY_API_MODULE, 'sigs.k8s.io/gateway-api/conformance', 'gateway-api-conformance', { test: true });
}
