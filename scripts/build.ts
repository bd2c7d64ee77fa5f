// `npm run build`: the two artefacts that are not plain TypeScript — the agent's Node-API addon
// and the CNI plugin as one self-contained executable. Both skip work when inputs are unchanged.
import { buildNative } from './build-native.ts';
import { buildCni } from './build-cni.ts';

console.log(buildNative());
const cni = await buildCni({});
console.log(`${cni.path} (${(cni.sizeBytes / 1e6).toFixed(1)} MB, ${cni.rebuilt ? `built in ${cni.ms} ms` : 'up to date'})`);
