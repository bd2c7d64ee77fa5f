// `npm run build`: what ships instead of plain TypeScript — the agent's Node-API addon, the agent
// as one bundle, and the CNI plugin as one self-contained executable.
import { buildNative } from './build-native.ts';
import { buildCni } from './build-cni.ts';
import { buildAgent } from './build-agent.ts';

console.log(buildNative());
console.log(await buildAgent());
const cni = await buildCni({});
console.log(`${cni.path} (${(cni.sizeBytes / 1e6).toFixed(1)} MB, ${cni.rebuilt ? `built in ${cni.ms} ms` : 'up to date'})`);
