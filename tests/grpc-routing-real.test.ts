// The gRPC routing suite again on real nodes (kubelet + containerd): the echo server and client run
// in pods of the conformance suite's echo image, the failing backends are testbox pods running
// tests/helpers/route-server.ts, and the client agent that routes is the chart's hostNetwork
// DaemonSet pod, so the routed calls cross nodes as they would on a cluster.
process.env.WEFT_TEST_RUNTIME = 'real';
await import('./grpc-routing.test.ts');
