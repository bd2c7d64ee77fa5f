// Command pause is the sandbox image of the playground's real nodes: the process that holds a
// pod's namespaces while its containers come and go. As PID 1 of the pod it reaps the children
// it inherits and exits on SIGINT or SIGTERM, since PID 1 has no default action for either.
// Built here, static, because no registry is reachable to pull one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
