// Package storage runs kube-apiserver's generic storage conformance tests
// (k8s.io/apiserver/pkg/storage/testing, the exported RunTest* functions) against an external
// etcd v3 endpoint: the etcd3 store kube-apiserver uses, and the watch cache (cacher) in front
// of it. The endpoint is $BRAMBLE_K8S_ETCD_ENDPOINT (e.g. http://127.0.0.1:2379); the Rust
// wrapper tests/tests/k8s_storage.rs starts a fresh etcd or Bramble for each Go test.
//
// The setup follows k8s.io/apiserver v0.37.2's own wiring (pkg/storage/etcd3/store_test.go,
// pkg/storage/cacher/cacher_test.go and cacher_testing_utils_test.go, Apache-2.0, The
// Kubernetes Authors), rewritten against the exported API only: the embedded etcd server
// becomes a clientv3 client of the external endpoint, and the hooks that reached into
// unexported fields (compaction through the embedded server or the watch cache, swapping the
// store's transformer) are done with real client calls and a transformer we own.
package storage

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
	"io"
	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/clock"
)

// EndpointEnv names the variable holding the etcd v3 client URL the tests talk to.
const EndpointEnv = "BRAMBLE_K8S_ETCD_ENDPOINT"

// defaultTestPrefix is what the PrefixTransformer puts in front of every stored value
// (upstream's constant of the same name).
const defaultTestPrefix = "test!"

var scheme = runtime.NewScheme()
var codecs = serializer.NewCodecFactory(scheme)

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}

func newPod() runtime.Object     { return &example.Pod{} }
func newPodList() runtime.Object { return &example.PodList{} }

// newClient dials the external endpoint and wraps the KV and Kubernetes interfaces in
// upstream's recorders, as testserver.RunEtcd does: some tests count the reads the store made.
func newClient(t testing.TB) *kubernetes.Client {
	t.Helper()
	endpoint := os.Getenv(EndpointEnv)
	if endpoint == "" {
		t.Skipf("%s is not set: these tests need an external etcd v3 endpoint", EndpointEnv)
	}
	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	recorder := storagetesting.NewKubernetesRecorder(client.Kubernetes)
	client.KV = storagetesting.NewKVRecorder(client.KV, recorder)
	client.Kubernetes = recorder
	return client
}

// swappableTransformer lets a test replace the store's transformer while the store runs:
// upstream assigns the unexported store.transformer and watcher.transformer fields instead.
type swappableTransformer struct {
	mu  sync.RWMutex
	cur value.Transformer
}

func (s *swappableTransformer) get() value.Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

func (s *swappableTransformer) set(t value.Transformer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = t
}

func (s *swappableTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return s.get().TransformFromStorage(ctx, data, dataCtx)
}

func (s *swappableTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return s.get().TransformToStorage(ctx, data, dataCtx)
}

// storeSetup is the etcd3 store of one test and what upstream's tests reach through it.
type storeSetup struct {
	ctx         context.Context
	store       storage.Interface
	client      *kubernetes.Client
	codec       runtime.Codec
	prefix      string
	transformer *swappableTransformer
	// prefixTransformer is the PrefixTransformer the store started with (nil when a test
	// gave its own transformer).
	prefixTransformer *storagetesting.PrefixTransformer
}

type setupOptions struct {
	codec          runtime.Codec
	transformer    value.Transformer
	prefix         string
	resourcePrefix string
	leaseConfig    etcd3.LeaseManagerConfig
}

type setupOption func(*setupOptions)

func withCodec(c runtime.Codec) setupOption {
	return func(o *setupOptions) { o.codec = c }
}

func withTransformer(tr value.Transformer) setupOption {
	return func(o *setupOptions) { o.transformer = tr }
}

// testPrefix is the key prefix of one test: its own name under /k8s-conformance, so tests
// sharing a server would not see each other's keys.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return "/k8s-conformance/" + name
}

// newStoreSetup builds an etcd3 store on the external endpoint (upstream's testSetup).
func newStoreSetup(t testing.TB, opts ...setupOption) *storeSetup {
	t.Helper()
	leaseConfig := etcd3.NewDefaultLeaseManagerConfig()
	// As upstream: 30 s is the default test timeout, so reuse leases for 1 s only.
	leaseConfig.ReuseDurationSeconds = 1
	o := setupOptions{
		codec:          apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion),
		prefix:         testPrefix(t),
		resourcePrefix: "/pods/",
		leaseConfig:    leaseConfig,
	}
	for _, opt := range opts {
		opt(&o)
	}
	s := &storeSetup{ctx: context.Background(), client: newClient(t), codec: o.codec, prefix: o.prefix}
	if o.transformer == nil {
		s.prefixTransformer = storagetesting.NewPrefixTransformer([]byte(defaultTestPrefix), false)
		o.transformer = s.prefixTransformer
	}
	s.transformer = &swappableTransformer{cur: o.transformer}
	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(s.client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	st, err := etcd3.New(s.client, compactor, o.codec, newPod, newPodList, o.prefix, o.resourcePrefix,
		schema.GroupResource{Resource: "pods"}, s.transformer, o.leaseConfig,
		etcd3.NewDefaultDecoder(o.codec, versioner), versioner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s.store = st
	return s
}

// withPrefixTransformer gives the store upstream's UpdatePrefixTransformer.
func (s *storeSetup) withPrefixTransformer() storagetesting.InterfaceWithPrefixTransformer {
	return &prefixTransformerStore{Interface: s.store, setup: s}
}

type prefixTransformerStore struct {
	storage.Interface
	setup *storeSetup
}

func (p *prefixTransformerStore) UpdatePrefixTransformer(modifier storagetesting.PrefixTransformerModifier) func() {
	original := p.setup.transformer.get()
	copied := *original.(*storagetesting.PrefixTransformer)
	p.setup.transformer.set(modifier(&copied))
	return func() { p.setup.transformer.set(original) }
}

// checkStorageInvariants reads the stored object straight from etcd (with the store's key
// prefix) and checks it was stored without resourceVersion and selfLink.
func (s *storeSetup) checkStorageInvariants() storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		resp, err := s.client.KV.Get(ctx, s.prefix+key)
		if err != nil {
			t.Fatalf("etcdClient.KV.Get failed: %v", err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("expecting non empty result on key: %s", key)
		}
		decoded, err := runtime.Decode(s.codec, resp.Kvs[0].Value[len(defaultTestPrefix):])
		if err != nil {
			t.Fatalf("expecting successful decode of object from %v\n%v", err, string(resp.Kvs[0].Value))
		}
		obj := decoded.(*example.Pod)
		if obj.ResourceVersion != "" {
			t.Errorf("stored object should have empty resource version")
		}
		if obj.SelfLink != "" {
			t.Errorf("stored output should have empty selfLink")
		}
	}
}

// increaseRV writes an unrelated key and returns the new revision (upstream's increaseRVFunc).
func increaseRV(client *clientv3.Client) storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := client.KV.Put(ctx, "increaseRV", "ok")
		if err != nil {
			t.Fatalf("Could not update increaseRV: %v", err)
		}
		return resp.Header.Revision
	}
}

// compactStorage compacts the server to resourceVersion with etcd3.Compact (the compare-and-
// swap on compact_rev_key, then a real Compact RPC), and when the store watches compactions
// (ListFromCacheSnapshot) waits until it has seen this one, as upstream's compactStorage does.
func compactStorage(store storage.Interface, client *clientv3.Client) storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		var currentVersion int64
		currentVersion, _, _, err = etcd3.Compact(ctx, client, currentVersion, int64(rv))
		if err != nil {
			_, _, _, err = etcd3.Compact(ctx, client, currentVersion, int64(rv))
		}
		if err != nil {
			t.Fatal(err)
		}
		if utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			waitCompactObserved(ctx, t, store, int64(rv))
		}
	}
}

// waitCompactObserved polls until the store reports rev as its compacted revision.
func waitCompactObserved(ctx context.Context, t *testing.T, store storage.Interface, rev int64) {
	deadline := time.After(30 * time.Second)
	for store.CompactRevision() != rev {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-deadline:
			t.Fatalf("the store did not observe compaction to %d (it has %d)", rev, store.CompactRevision())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
