// The node-traffic suite again on real nodes (kubelet + containerd): the kubelet that probes the
// pods is a real one in the node's network namespace, and the opt-out is a real DaemonSet roll.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./node-traffic.test.ts');
