#!/usr/bin/env node
// weft — the command-line tool. `weft dev ...` drives the local playground cluster.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';

const USAGE = `usage:
  weft dev up [--nodes N] [--name NAME] [--detach] [--demo] [--no-mesh] [--mtls-mode STRICT|PERMISSIVE]
              [--runtime real|simulated] [--image TARBALL]...  start a playground cluster (with Weft unless --no-mesh);
                                                              real (default): kubelet + containerd nodes running images;
                                                              simulated: pods are host processes (faster, see playground/README.md);
                                                              --image: also load this image (docker save format) on every real node
  weft dev status [-o json] [--name NAME]                     nodes, pods, kubeconfig
  weft dev exec <namespace>/<pod> [--name NAME] -- <cmd...>   run a command in a pod's network
  weft dev kubectl [--name NAME] <args...>                    kubectl against the playground
  weft dev helm [--name NAME] <args...>                       helm against the playground (Weft is release weft in weft-system)
  weft dev restart-agent <node> [--name NAME] [--build] [-o json]
                                                              upgrade a node's agent in place as the DaemonSet does:
                                                              new process ready first, then the old one drains
  weft dev down [--name NAME]                                 remove everything the playground made
  weft policy check <namespace>/<src-pod> <namespace>/<dst-pod> [--port P] [--method M] [--path /x] [--host H]
        [--header 'name: value']... [-o json] [--kubeconfig PATH] [--name NAME] [--namespace weft-system]
        [--trust-domain cluster.local] [--mtls-mode PERMISSIVE|STRICT] [--trust-node-traffic]
                                                              which policy and rule decide a connection (exit 0 allow, 3 deny)
  weft route check <namespace>[/<pod>] http://<service>.<namespace>[:port]/path [--method M] [-H 'name: value']...
        [-o json] [--kubeconfig PATH] [--name NAME]             which HTTPRoute, rule, filters and backends a request from that
                                                              namespace takes (exit 0 routed or unrouted, 3 answered 404/500);
                                                              grpc://<service>.<namespace>:<port>/<pkg.Service>/<Method>: a gRPC
                                                              call, matched against GRPCRoutes too`;

const DEFAULT_NAME = process.env.WEFT_PLAYGROUND ?? 'weft';

function fail(msg: string, code = 1): never {
  process.stderr.write(`weft: ${msg}\n`);
  process.exit(code);
}

async function dev(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  // Arguments after the pod (exec) or the subcommand (kubectl) belong to the child command.
  const split = rest.indexOf('--');
  const own = split >= 0 ? rest.slice(0, split) : rest;
  const passthrough = split >= 0 ? rest.slice(split + 1) : [];
  const opts = {
    name: { type: 'string', default: DEFAULT_NAME },
    nodes: { type: 'string', default: '2' },
    detach: { type: 'boolean', default: false },
    demo: { type: 'boolean', default: false },
    'no-mesh': { type: 'boolean', default: false },
    'mtls-mode': { type: 'string', default: 'PERMISSIVE' },
    runtime: { type: 'string', default: 'real' },
    output: { type: 'string', short: 'o', default: 'text' },
    image: { type: 'string', multiple: true },
  } as const;

  switch (sub) {
    case 'up': {
      const { values } = parseArgs({ args: own, options: opts });
      const { up } = await import('../playground/up.ts');
      const nodes = Number(values.nodes);
      if (!Number.isInteger(nodes) || nodes < 1) fail(`--nodes must be a positive integer, not "${values.nodes}"`);
      const mtlsMode = values['mtls-mode'].toUpperCase();
      if (mtlsMode !== 'STRICT' && mtlsMode !== 'PERMISSIVE') fail(`--mtls-mode must be STRICT or PERMISSIVE, not "${values['mtls-mode']}"`);
      const runtime = values.runtime;
      if (runtime !== 'simulated' && runtime !== 'real') fail(`--runtime must be simulated or real, not "${runtime}"`);
      const state = await up({ name: values.name, nodes, detach: values.detach, demo: values.demo, mesh: !values['no-mesh'], mtlsMode, runtime, images: (values.image ?? []).map((i) => resolve(i)) });
      if (state) {
        process.stderr.write(`playground "${state.name}" is ready in ${state.upSeconds} s; kubeconfig: ${state.plan.paths.adminKubeconfig}\n`);
        if (values.demo) await (await import('../playground/demo.ts')).deployDemo(state.plan, state.runtime);
      }
      return;
    }
    case 'down': {
      const { values } = parseArgs({ args: own, options: { name: opts.name } });
      const { teardown } = await import('../playground/down.ts');
      const existed = await teardown(values.name);
      process.stderr.write(existed ? `playground "${values.name}" removed\n` : `no playground "${values.name}" was running; swept any leftovers\n`);
      return;
    }
    case 'status': {
      const { values } = parseArgs({ args: own, options: { name: opts.name, output: opts.output } });
      const { status, formatStatus } = await import('../playground/status.ts');
      const s = await status(values.name);
      process.stdout.write(values.output === 'json' ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
      return;
    }
    case 'exec': {
      const { values, positionals } = parseArgs({ args: own, options: { name: opts.name }, allowPositionals: true });
      const target = positionals[0];
      if (!target || !target.includes('/') || passthrough.length === 0) fail('usage: weft dev exec <namespace>/<pod> -- <cmd...>', 2);
      const { podNetnsPath } = await import('../playground/exec-pod.ts');
      const netns = await podNetnsPath(values.name, target);
      const r = spawnSync('nsenter', [`--net=${netns}`, '--', ...passthrough], { stdio: 'inherit' });
      process.exit(r.status ?? 1);
      return;
    }
    case 'kubectl':
    case 'helm': {
      // Everything but --name goes to kubectl or helm untouched.
      let name = DEFAULT_NAME;
      const args = [...rest];
      const i = args.findIndex((a) => a === '--name' || a.startsWith('--name='));
      if (i >= 0) {
        const a = args[i] as string;
        name = a.includes('=') ? a.slice(7) : (args[i + 1] ?? fail('--name needs a value', 2));
        args.splice(i, a.includes('=') ? 1 : 2);
      }
      const { readState } = await import('../playground/state.ts');
      const { helmEnv } = await import('../playground/mesh.ts');
      const s = (await readState(name)) ?? fail(`no playground named "${name}" is running`);
      const r =
        sub === 'kubectl'
          ? spawnSync(join(s.plan.binDir, 'kubectl'), [`--kubeconfig=${s.plan.paths.adminKubeconfig}`, ...args], { stdio: 'inherit' })
          : spawnSync(join(s.plan.binDir, 'helm'), args, { stdio: 'inherit', env: { ...process.env, ...helmEnv(s.plan) } });
      process.exit(r.status ?? 1);
      return;
    }
    case 'restart-agent': {
      const { values, positionals } = parseArgs({
        args: own,
        options: { name: opts.name, output: opts.output, build: { type: 'boolean', default: false } },
        allowPositionals: true,
      });
      const node = positionals[0];
      if (!node || positionals.length > 1) fail('usage: weft dev restart-agent <node> [--name NAME] [--build] [-o json]', 2);
      // --build: the new process runs the agent as it is in the working tree now.
      if (values.build) await (await import('../scripts/build-agent.ts')).buildAgent();
      const { restartAgent } = await import('../playground/mesh.ts');
      const r = await restartAgent(values.name, node);
      if (values.output === 'json') process.stdout.write(`${JSON.stringify(r)}\n`);
      else process.stderr.write(`agent on ${r.node} upgraded: pid ${r.oldPid} -> ${r.newPid}, ready in ${(r.readyMs / 1000).toFixed(1)} s; the old process drains its connections\n`);
      return;
    }
    default:
      fail(USAGE, 2);
  }
}

async function policy(argv: string[]): Promise<void> {
  const { policyCommand } = await import('./policy-check.ts');
  process.exitCode = await policyCommand(argv, { defaultPlayground: DEFAULT_NAME, usage: USAGE });
}

async function route(argv: string[]): Promise<void> {
  const { routeCommand } = await import('./route-check.ts');
  process.exitCode = await routeCommand(argv, { defaultPlayground: DEFAULT_NAME, usage: USAGE });
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'dev') return dev(rest);
  if (cmd === 'policy') return policy(rest);
  if (cmd === 'route') return route(rest);
  fail(USAGE, 2);
}

main().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)));
