// weft-cni: the chained CNI plugin. A runtime executes it once per pod event (CNI spec 1.1:
// ADD, DEL, CHECK, GC, STATUS, VERSION); see run.ts for the call and commands/ for each command.
// This file is the entry point esbuild bundles into the single executable.
import { readStdinSync, run } from './run.ts';

void run(process.env, readStdinSync).then((code) => process.exit(code));
