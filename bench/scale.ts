// The control plane at 1,000 nodes (issue 16): see bench/scale-harness.ts for what runs and what
// is measured.
//
//   node bench/scale.ts [--nodes 1000] [--pods 10000] [--agent-procs 2] [--rounds 5] [--no-storm]
//                       [--name scl-...] [--reuse] [--keep]
//
// Prints progress on stderr and the report as JSON on stdout. Bar (issue 16): policy programmed
// p99 ≤ 1 s at 1,000 nodes.
import { parseArgs } from 'node:util';
import { uniqueName } from '../tests/helpers/playground.ts';
import { runScale } from './scale-harness.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    pods: { type: 'string', default: '10000' },
    'agent-procs': { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    'no-storm': { type: 'boolean', default: false },
    name: { type: 'string' },
    reuse: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});

const report = await runScale({
  name: values.name ?? uniqueName('scl'),
  nodes: Number(values.nodes),
  pods: Number(values.pods),
  agentProcs: Number(values['agent-procs']),
  rounds: Number(values.rounds),
  storm: !values['no-storm'],
  reuse: values.reuse,
  keep: values.keep,
  log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
});
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
const bar = report.broad.p99 <= 1_000 ? 'met' : 'NOT met';
process.stderr.write(`policy programmed on ${report.agents} nodes: p50 ${report.broad.p50} ms, p99 ${report.broad.p99} ms (bar p99 ≤ 1 s: ${bar})\n`);
