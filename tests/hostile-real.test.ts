// The hostile-client suite again on real nodes (kubelet + containerd): "no Weft process restarted"
// is then the kubelet's view (container restarts show as new host pids), not the supervisor's.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./hostile.test.ts');
