// The routing suite again on real nodes (kubelet + containerd): the client agent that routes is
// the chart's hostNetwork DaemonSet pod, and clients and backends are real pod sandboxes on the
// real CNI chain, so the routed requests cross nodes as they would on a cluster.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./routing.test.ts');
