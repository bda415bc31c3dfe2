// Command coredns is CoreDNS with a small plugin set: enough to serve a zone
// from etcd (where ExternalDNS writes) on a chosen loopback address, with
// logging and health/readiness endpoints. Linking only these plugins keeps the
// cold build short; the directive order stays CoreDNS's own (core/dnsserver),
// so a Corefile behaves here as it does with the full binary.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/etcd"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
