// Builds the agent's Node-API addon (agent/native/sockopt.c) with the system C compiler. Node-API
// is ABI-stable, so the headers come from the node-api-headers package and nothing is downloaded.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'agent/native/sockopt.c');
const out = join(root, 'dist/native/weft_sockopt.node');

export function buildNative(): string {
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(dirname(out), { recursive: true });
  const include = join(root, 'node_modules/node-api-headers/include');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-DNAPI_VERSION=8', `-I${include}`, '-o', out, src], { stdio: 'inherit' });
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(buildNative());
