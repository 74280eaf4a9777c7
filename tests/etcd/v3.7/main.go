// The etcd v3.7.3 server, built from etcd's Go modules: the reference for what etcd 3.7 added
// (KV.RangeStream, tests/tests/range_stream.rs). etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
