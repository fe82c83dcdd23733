// The etcd server, built from its Go module: Debian ships only etcd 3.4, which current
// kube-apiserver releases no longer support.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
