// The replicas suite on real nodes (kubelet + containerd): the two replicas are the chart's own
// controller Deployment behind its Service, and the agents are its hostNetwork DaemonSet pods, split
// between the replicas by a DNAT ahead of kube-proxy in each node's network namespace.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./replicas.test.ts');
