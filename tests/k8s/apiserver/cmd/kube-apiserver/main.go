// kube-apiserver as upstream's cmd/kube-apiserver/apiserver.go builds it, from the
// k8s.io/kubernetes module: the binary tests/tests/kube_apiserver.rs starts against a Bramble
// (and an etcd 3.6) cluster.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version" // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
