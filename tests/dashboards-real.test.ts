// The dashboards suite again on real nodes (kubelet + containerd): Prometheus scrapes the chart's
// own agent and controller pods (two controller replicas, each on its pod address).
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./dashboards.test.ts');
