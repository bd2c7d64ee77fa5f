// What stays in the node's CNI bin dir under the name weft-cni once Weft is uninstalled: a few
// lines of POSIX sh instead of the plugin.
//
// Why not nothing: a runtime that tears a pod down with the configuration it was set up with
// (libcni's cache; CRI-O does, and the CNI spec asks for it) still calls weft-cni for every pod
// created while it was chained, and with the executable gone that DEL fails ("failed to find
// plugin") and the pod stays Terminating for good, the failure users report after removing
// other meshes' CNI plugins. There is nothing of Weft left to undo by then, so DEL (and GC,
// CHECK, STATUS) succeed; ADD can only come from a configuration someone chained by hand and is
// refused with a CNI error. A later install overwrites the stub with the plugin.
import { SUPPORTED_VERSIONS } from '../../cni-plugin/netconf.ts';
import { CNI_ERROR } from '../../cni-plugin/errors.ts';

/** A line the stub carries, so that install and tests can tell it from the plugin. */
export const UNINSTALLED_MARKER = '# weft-cni: uninstalled';

const version = JSON.stringify({ cniVersion: '1.1.0', supportedVersions: SUPPORTED_VERSIONS });
const refusal = JSON.stringify({
  cniVersion: '1.0.0',
  code: CNI_ERROR.INVALID_NETWORK_CONFIG,
  msg: 'weft-cni was uninstalled from this node',
  details: 'Weft was removed (helm uninstall) but a CNI configuration still chains weft-cni: remove that entry, or install Weft again',
});

export const UNINSTALLED_STUB = `#!/bin/sh
${UNINSTALLED_MARKER}
# Pods set up while Weft was installed are torn down through here; nothing of Weft is left to undo.
case "$CNI_COMMAND" in
  DEL | GC | CHECK | STATUS) exit 0 ;;
  VERSION) printf '%s\\n' '${version}'; exit 0 ;;
esac
printf '%s\\n' '${refusal}'
exit 1
`;
