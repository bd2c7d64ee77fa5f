// The chaos suite again on real nodes (kubelet + containerd): a killed agent or controller is a
// container the kubelet restarts, the leader change is between the chart's own two replicas behind
// a real Service, and "every controller away" is the Deployment scaled to zero.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./chaos.test.ts');
