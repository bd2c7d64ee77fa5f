// Command etcd runs etcd's own entry point; this wrapper exists so that etcd builds inside the
// same pinned module graph as the other playground components.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
