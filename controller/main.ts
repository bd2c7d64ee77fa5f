#!/usr/bin/env node
// weft-controller: the process. Flags and environment in config.ts, the parts in controller.ts.
// SIGTERM (Kubernetes stopping the pod) and SIGINT shut down gracefully: /readyz turns 503, sync
// streams end with SHUTTING_DOWN so that agents reconnect to another replica, then the listeners
// and watches close. A second signal exits at once.
import { startController } from './controller.ts';
import { ConfigError, USAGE, parseConfig } from './config.ts';
import { createLogger, errorMessage } from '../api/log.ts';

const EXIT_CONFIG = 2;
const SHUTDOWN_GRACE_MS = 10_000;

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let cfg;
  try {
    cfg = parseConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`weft-controller: ${err.message}\n\n${USAGE}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  const log = createLogger({ component: 'controller' }, { level: cfg.logLevel });
  const controller = await startController(cfg, { log, processMetrics: true });

  let signals = 0;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      log.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    log.info('shutting down', { signal });
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS + 5_000);
    force.unref();
    controller.stop(SHUTDOWN_GRACE_MS).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    const code = (err as { code?: unknown }).code;
    process.stderr.write(`weft-controller: ${typeof code === 'string' ? `${code}: ` : ''}${errorMessage(err)}\n`);
    process.exit(1);
  });
}
