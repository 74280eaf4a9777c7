// The etcd v3.5.21 server, built from etcd's Go modules for the migration tests
// (tests/tests/etcd_import.rs): the same main as etcd's own binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
