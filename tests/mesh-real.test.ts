// The L4 mesh suite again on real nodes (kubelet + containerd): a frozen or killed agent or
// controller is a container the kubelet probes and restarts, and the STRICT playground is a
// second real cluster.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./mesh.test.ts');
