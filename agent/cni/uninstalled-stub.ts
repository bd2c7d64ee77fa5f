// What stays in the node's CNI bin dir under the name weft-cni once Weft is uninstalled: a few
// lines of POSIX sh instead of the plugin.
//
// Why not nothing: a runtime that tears a pod down with the configuration it was set up with
// (libcni's cache; CRI-O does, and the CNI spec asks for it) still calls weft-cni for every pod
// created while it was chained, and with the executable gone that DEL fails ("failed to find
// plugin") and the pod stays Terminating for good, the failure users report after removing
// other meshes' CNI plugins. There is nothing of Weft left to undo by then, so DEL (and GC,
// CHECK, STATUS) succeed.
//
// ADD passes the chain's result through unchanged, as the spec asks of a chained plugin that
// does not modify it: a configuration that still chains weft-cni (an uninstall that could not
// take the entry out, someone's copy of the old file, a runtime that has not reloaded yet) then
// starts pods unmeshed, with the primary CNI's networking, instead of leaving them stuck in
// ContainerCreating. Only an ADD with no previous result (weft-cni first, or alone, in a chain,
// which never gave a pod its network) is refused. A later install overwrites the stub.
//
// The stub needs nothing but sh: a node may have no jq, python or even awk. It finds the
// top-level `prevResult` member with a small JSON scanner (the netconf is a few kilobytes) and
// prints it; libcni's prevResult carries its cniVersion, which is put in from the netconf if not.
import { SUPPORTED_VERSIONS } from '../../cni-plugin/netconf.ts';
import { CNI_ERROR } from '../../cni-plugin/errors.ts';

/** A line the stub carries, so that install and tests can tell it from the plugin. */
export const UNINSTALLED_MARKER = '# weft-cni: uninstalled';

/** How the stub's file begins: enough to recognise it without reading a whole plugin binary. */
export const UNINSTALLED_PREFIX = `#!/bin/sh\n${UNINSTALLED_MARKER}\n`;

const version = JSON.stringify({ cniVersion: '1.1.0', supportedVersions: SUPPORTED_VERSIONS });
const refusal = JSON.stringify({
  cniVersion: '1.0.0',
  code: CNI_ERROR.INVALID_NETWORK_CONFIG,
  msg: 'weft-cni was uninstalled from this node and has no previous result to pass on',
  details: 'Weft was removed (helm uninstall) and a CNI configuration runs weft-cni with no plugin before it: remove that entry, or install Weft again',
});

export const UNINSTALLED_STUB = `${UNINSTALLED_PREFIX}# Pods set up while Weft was installed are torn down through here; nothing of Weft is left to undo.
case "$CNI_COMMAND" in
  DEL | GC | CHECK | STATUS) exit 0 ;;
  VERSION) printf '%s\\n' '${version}'; exit 0 ;;
esac

# member JSON KEY: the raw value of KEY at the top level of the object JSON, or nothing.
# A character at a time, but over the pieces between commas, not the whole text: each step
# copies what is left of the string it works on, and on all of a few kilobytes bash took seconds.
# For the same reason the value is gathered a piece at a time.
member() {
  want=$2 depth=0 str=0 esc=0 tok= key= cap=0 val= sep=
  IFS=,
  # shellcheck disable=SC2086 # split on commas on purpose; -f: no file names
  set -f -- $1
  IFS=' 	
'
  for piece do
    rest=$sep$piece sep=, part=
    while [ -n "$rest" ]; do
      c=\${rest%"\${rest#?}"}
      rest=\${rest#?}
      if [ $str = 1 ]; then
        [ $cap = 1 ] && part=$part$c
        if [ $esc = 1 ]; then
          esc=0 tok=$tok$c
        elif [ "$c" = '\\' ]; then
          esc=1 tok=$tok$c
        elif [ "$c" = '"' ]; then
          str=0
          [ $depth = 1 ] && key=$tok
        elif [ $depth = 1 ]; then
          tok=$tok$c
        fi
        continue
      fi
      case $c in
        '"') str=1 tok= ;;
        '{' | '[') depth=$((depth + 1)) ;;
        '}' | ']') depth=$((depth - 1)) ;;
      esac
      if [ $cap = 1 ]; then
        if [ $depth = 0 ] || { [ $depth = 1 ] && [ "$c" = ',' ]; }; then
          val=$val$part
          val=\${val%"\${val##*[![:space:]]}"}
          printf '%s' "\${val#"\${val%%[![:space:]]*}"}"
          return 0
        fi
        part=$part$c
      elif [ $depth = 1 ] && [ "$c" = ':' ] && [ "$key" = "$want" ]; then
        cap=1
      elif [ "$c" = ',' ]; then
        key=
      fi
    done
    val=$val$part
  done
}

if [ "$CNI_COMMAND" = ADD ]; then
  conf=
  while IFS= read -r line || [ -n "$line" ]; do conf="$conf$line
"; done
  prev=$(member "$conf" prevResult)
  case $prev in
    '{'*)
      if [ -z "$(member "$prev" cniVersion)" ]; then
        v=$(member "$conf" cniVersion)
        body=\${prev#?}
        trimmed=\${body#"\${body%%[![:space:]]*}"}
        if [ -n "$v" ]; then
          case $trimmed in '}'*) prev="{\\"cniVersion\\":$v$trimmed" ;; *) prev="{\\"cniVersion\\":$v,$trimmed" ;; esac
        fi
      fi
      printf '%s\\n' "$prev"
      exit 0
      ;;
  esac
fi
printf '%s\\n' '${refusal}'
exit 1
`;
