// The upgrade suite again on real nodes (kubelet + containerd): there the agent upgrade is a real
// DaemonSet rolling update, whose timing the simulated `restart-agent` does not reproduce (a new
// pod that looks Ready before its process runs; the old pod deleted early). CI runs both.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./upgrade.test.ts');
