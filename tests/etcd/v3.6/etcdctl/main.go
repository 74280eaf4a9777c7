// etcdctl v3.6, built from etcd's Go modules: the reference client the end-to-end tests
// (tests/) run against both etcd and Bramble. The same main as etcd's own etcdctl.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
