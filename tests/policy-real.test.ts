// The policy suite again on real nodes (kubelet + containerd): the agents enforce from the chart's
// DaemonSet pods, the kubelet's probes reach pods through the real CNI chain, and a killed
// controller is restarted by the kubelet rather than the playground's supervisor.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./policy.test.ts');
