// Paths a container would see, mapped to where the playground put each volume.
import t from 'tap';
import { inMounts } from './pod-template.ts';

// Longest mount path first, as podProcess() sorts them.
const mounts = [
  { mountPath: '/var/run/secrets/weft', local: '/pg/pod/volumes/weft-credentials' },
  { mountPath: '/var/run/weft', local: '/pg/nodes/node-1/root/var/run/weft' },
  { mountPath: '/opt/cni/bin', local: '/pg/nodes/node-1/root/opt/cni/bin' },
];

t.equal(inMounts('/var/run/secrets/weft/token', mounts), '/pg/pod/volumes/weft-credentials/token', 'a file under a mount');
t.equal(inMounts('/var/run/weft', mounts), '/pg/nodes/node-1/root/var/run/weft', 'the mount path itself');
t.equal(inMounts('/var/run/weft/cni.sock', mounts), '/pg/nodes/node-1/root/var/run/weft/cni.sock', 'the shorter of two nested prefixes when only it matches');
t.equal(inMounts('/var/run/weft2/x', mounts), '/var/run/weft2/x', 'a name that merely starts like a mount is not under it');
t.equal(inMounts('https://weft-controller.weft-system.svc:15012', mounts), 'https://weft-controller.weft-system.svc:15012', 'not a path: unchanged');
t.equal(inMounts('/usr/local/lib/weft/weft-cni', mounts), '/usr/local/lib/weft/weft-cni', 'a path in no volume (the image) is unchanged');
