// Command etcd starts an etcd server; it is the upstream etcdmain entry point
// built from the published module so no prebuilt binary is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
