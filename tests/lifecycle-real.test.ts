// The Helm lifecycle suite again on real nodes (kubelet + containerd): `helm upgrade` there is a
// real DaemonSet rolling update and `helm uninstall` runs the chart's pre-delete hook Job and the
// real teardown of the chart's pods, which the simulated chart-runner only imitates.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./lifecycle.test.ts');
