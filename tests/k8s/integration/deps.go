//go:build tools

// Package integration holds no code of its own: it pins k8s.io/kubernetes (and, through the
// replace directives of go.mod, its staging modules k8s.io/* at the matching v0.37.2) so that
// scripts/k8s-integration-build can compile the test binaries of Kubernetes' own integration
// test packages (`go test -c k8s.io/kubernetes/test/integration/...`). The imports below are
// those packages' non-test code and the test-only modules their _test.go files import, so that
// go.mod and go.sum cover the test builds with -mod=readonly.
package integration

import (
	_ "k8s.io/kubernetes/test/integration/etcd"
	_ "k8s.io/kubernetes/test/integration/framework"

	_ "k8s.io/cli-runtime/pkg/genericclioptions"
	_ "k8s.io/kubectl/pkg/cmd/util"
	_ "k8s.io/kubectl/pkg/proxy"
	_ "k8s.io/sample-apiserver/pkg/apis/wardle/v1alpha1"
)
