// The tracing suite again on real nodes (kubelet + containerd): tracing is turned on by a real
// DaemonSet rolling update, the agents export from their hostNetwork pods in the nodes'
// namespaces to the collector's pod IP, and the collector stopped is a container's process.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./tracing.test.ts');
