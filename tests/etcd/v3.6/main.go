// The etcd v3.6.16 server, built from etcd's Go modules: the reference the end-to-end tests
// (tests/) compare Bramble with, and the source of the migration tests. etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
