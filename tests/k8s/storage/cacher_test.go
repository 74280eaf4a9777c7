package storage

// The same conformance tests through the watch cache (cacher) kube-apiserver puts in front of
// the etcd3 store: one Go test per storagetesting.Run* call of k8s.io/apiserver v0.37.2's
// pkg/storage/cacher/cacher_test.go (the cases upstream leaves as TODO are left out too).
// The cacher lists and watches etcd through the store (consistent reads with
// WithRequireLeader, watch progress requests, watch-list), so these check what the cache
// needs from the server.

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/cacher"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/tools/cache"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/utils/clock"
)

// examplev1ProtoCodec stores objects as protobuf, as kube-apiserver does (upstream's codec of
// the same name in cacher_testing_utils_test.go).
var examplev1ProtoCodec runtime.Codec

func init() {
	pb := protobuf.NewSerializer(scheme, scheme)
	examplev1ProtoCodec = codecs.CodecForVersions(pb, pb, schema.GroupVersions{examplev1.SchemeGroupVersion}, nil)
}

// cacherCompactorPollPeriod is how often the cacher's compactor (with ListFromCacheSnapshot)
// looks at the store's compacted revision: compactorPollPeriod in cacher/compactor.go.
const cacherCompactorPollPeriod = 15 * time.Second

func getPodAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	pod, ok := obj.(*example.Pod)
	if !ok {
		return nil, nil, fmt.Errorf("not a pod")
	}
	return labels.Set(pod.Labels), fields.Set{
		"spec.nodeName":      pod.Spec.NodeName,
		"spec.restartPolicy": string(pod.Spec.RestartPolicy),
		"status.phase":       string(pod.Status.Phase),
		"metadata.name":      pod.Name,
		"metadata.namespace": pod.Namespace,
	}, nil
}

type cacherOptions struct {
	keyFunc      func(runtime.Object) (string, error)
	indexerFuncs map[string]storage.IndexerFunc
	indexers     cache.Indexers
	codec        runtime.Codec
	transformer  value.Transformer
}

type cacherOption func(*cacherOptions)

func withClusterScopedKeyFunc(o *cacherOptions) {
	o.keyFunc = func(obj runtime.Object) (string, error) { return storage.NoNamespaceKeyFunc("/pods/", obj) }
}

// withNodeNameAndNamespaceIndex mirrors the pod indexers of pkg/registry/core/pod/strategy.go.
func withNodeNameAndNamespaceIndex(o *cacherOptions) {
	o.indexerFuncs = map[string]storage.IndexerFunc{
		"spec.nodeName": func(obj runtime.Object) string {
			pod, ok := obj.(*example.Pod)
			if !ok {
				return ""
			}
			return pod.Spec.NodeName
		},
	}
	o.indexers = map[string]cache.IndexFunc{
		"f:spec.nodeName": func(obj interface{}) ([]string, error) {
			return []string{obj.(*example.Pod).Spec.NodeName}, nil
		},
		"f:metadata.namespace": func(obj interface{}) ([]string, error) {
			return []string{obj.(*example.Pod).Namespace}, nil
		},
	}
}

func withCacherTransformer(tr value.Transformer) cacherOption {
	return func(o *cacherOptions) { o.transformer = tr }
}

func withCacherCodec(c runtime.Codec) cacherOption {
	return func(o *cacherOptions) { o.codec = c }
}

// cacherSetup is a started, initialized watch cache over an etcd3 store of the endpoint.
type cacherSetup struct {
	ctx       context.Context
	delegator *cacher.CacheDelegator
	store     storage.Interface
	client    *clientv3.Client
	recorder  *storagetesting.KubernetesRecorder
}

// newCacherSetup follows upstream's testSetupWithEtcdServer: one injected list error (so the
// reflector's relist runs), then wait until the cache is ready.
func newCacherSetup(t *testing.T, opts ...cacherOption) *cacherSetup {
	t.Helper()
	o := cacherOptions{
		keyFunc:     func(obj runtime.Object) (string, error) { return storage.NamespaceKeyFunc("/pods/", obj) },
		codec:       examplev1ProtoCodec,
		transformer: identity.NewEncryptCheckTransformer(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	client := newClient(t)
	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	// Upstream's prefix (etcd3testing.PathPrefix()): the cacher's list tests expect the etcd
	// requests it makes, keys included, so each cacher test has the /registry prefix (on a
	// server of its own) instead of a prefix per test.
	etcdStorage, err := etcd3.New(client, compactor, o.codec, newPod, newPodList, "/registry", "/pods/",
		schema.GroupResource{Resource: "pods"}, o.transformer, etcd3.NewDefaultLeaseManagerConfig(),
		etcd3.NewDefaultDecoder(o.codec, versioner), versioner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcdStorage.Close)

	listErrors := 1
	if clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		// The reflector then watches instead of listing: no list error to consume.
		listErrors = 0
	}
	wrapped := &storagetesting.StorageInjectingListErrors{Interface: etcdStorage, Errors: listErrors}
	c, err := cacher.NewCacherFromConfig(cacher.Config{
		Storage:             wrapped,
		Versioner:           versioner,
		GroupResource:       schema.GroupResource{Resource: "pods"},
		EventsHistoryWindow: cacher.DefaultEventFreshDuration,
		ResourcePrefix:      "/pods/",
		KeyFunc:             o.keyFunc,
		GetAttrsFunc:        getPodAttrs,
		NewFunc:             newPod,
		NewListFunc:         newPodList,
		IndexerFuncs:        o.indexerFuncs,
		Indexers:            &o.indexers,
		Codec:               o.codec,
		Clock:               clock.RealClock{},
	})
	if err != nil {
		t.Fatalf("Failed to initialize cacher: %v", err)
	}
	ctx := context.Background()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return wrapped.ErrorsConsumed() }); err != nil {
		t.Fatalf("Failed to inject list errors: %v", err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	d := cacher.NewCacheDelegator(c, wrapped)
	t.Cleanup(func() {
		d.Stop()
		c.Stop()
	})
	return &cacherSetup{ctx: ctx, delegator: d, store: etcdStorage, client: client.Client,
		recorder: client.Kubernetes.(*storagetesting.KubernetesRecorder)}
}

// compact compacts the server through the store (as compactStorage), then, when the cacher
// keeps list snapshots, waits one poll of its compactor so it drops the compacted ones
// (upstream calls the unexported compactIfNeeded instead of waiting).
func (s *cacherSetup) compact() storagetesting.Compaction {
	inner := compactStorage(s.store, s.client)
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		inner(ctx, t, resourceVersion)
		if utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			time.Sleep(cacherCompactorPollPeriod + time.Second)
		}
	}
}

func noStorageInvariants(context.Context, *testing.T, string) {}

func noStorageCalls(*testing.T, uint64, uint64) {}

func TestCacher_Create(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestCreate(s.ctx, t, s.delegator, noStorageInvariants)
}

func TestCacher_CreateWithTTL(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestCreateWithTTL(s.ctx, t, s.delegator)
}

func TestCacher_CreateWithKeyExist(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestCreateWithKeyExist(s.ctx, t, s.delegator)
}

func TestCacher_Get(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestGet(s.ctx, t, s.delegator)
}

func TestCacher_UnconditionalDelete(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestUnconditionalDelete(s.ctx, t, s.delegator)
}

func TestCacher_ConditionalDelete(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestConditionalDelete(s.ctx, t, s.delegator)
}

func TestCacher_DeleteWithSuggestion(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteWithSuggestion(s.ctx, t, s.delegator)
}

func TestCacher_DeleteWithSuggestionAndConflict(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteWithSuggestionAndConflict(s.ctx, t, s.delegator)
}

func TestCacher_DeleteWithSuggestionOfDeletedObject(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(s.ctx, t, s.delegator)
}

func TestCacher_ValidateDeletionWithSuggestion(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestValidateDeletionWithSuggestion(s.ctx, t, s.delegator)
}

func TestCacher_ValidateDeletionWithOnlySuggestionValid(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestValidateDeletionWithOnlySuggestionValid(s.ctx, t, s.delegator)
}

func TestCacher_DeleteWithConflict(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteWithConflict(s.ctx, t, s.delegator)
}

func TestCacher_DeleteWithConflictAndMissingExpectedTransformOrDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	tr := &failingTransformer{Transformer: identity.NewEncryptCheckTransformer()}
	s := newCacherSetup(t, withCacherTransformer(tr))
	storagetesting.RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError(s.ctx, t, s.delegator, tr.setFailing)
}

func TestCacher_DeleteWithConflictAndExpectedTransformError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	tr := &failingTransformer{Transformer: identity.NewEncryptCheckTransformer()}
	s := newCacherSetup(t, withCacherTransformer(tr))
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(s.ctx, t, s.delegator, tr.setFailing)
}

func TestCacher_DeleteWithConflictAndExpectedDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	// The stored bytes deliberately fail to decode: no panic on decode errors.
	etcd3.TestOnlySetFatalOnDecodeError(t, false)
	codec := &failingCodec{Codec: examplev1ProtoCodec}
	s := newCacherSetup(t, withCacherCodec(codec))
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(s.ctx, t, s.delegator, codec.setFailing)
}

func TestCacher_DeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(s.ctx, t, s.delegator)
}

func TestCacher_PreconditionalDeleteWithSuggestion(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestPreconditionalDeleteWithSuggestion(s.ctx, t, s.delegator)
}

func TestCacher_PreconditionalDeleteWithSuggestionPass(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass(s.ctx, t, s.delegator)
}

func TestCacher_ListPaging(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestListPaging(s.ctx, t, s.delegator)
}

func listFromCacheSnapshot(t *testing.T, on bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, on)
}

func cacherList(t *testing.T, snapshot bool) {
	listFromCacheSnapshot(t, snapshot)
	s := newCacherSetup(t)
	storagetesting.RunTestList(s.ctx, t, s.delegator, s.compact(), true, s.recorder)
}

func TestCacher_List(t *testing.T)               { cacherList(t, false) }
func TestCacher_List_CacheSnapshot(t *testing.T) { cacherList(t, true) }

func cacherConsistentList(t *testing.T, snapshot bool) {
	listFromCacheSnapshot(t, snapshot)
	s := newCacherSetup(t)
	storagetesting.RunTestConsistentList(s.ctx, t, s.delegator, increaseRV(s.client), true, true, snapshot)
}

func TestCacher_ConsistentList(t *testing.T)               { cacherConsistentList(t, false) }
func TestCacher_ConsistentList_CacheSnapshot(t *testing.T) { cacherConsistentList(t, true) }

func cacherGetListNonRecursive(t *testing.T, snapshot bool) {
	listFromCacheSnapshot(t, snapshot)
	s := newCacherSetup(t)
	storagetesting.RunTestGetListNonRecursive(s.ctx, t, increaseRV(s.client), s.delegator)
}

func TestCacher_GetListNonRecursive(t *testing.T) { cacherGetListNonRecursive(t, false) }
func TestCacher_GetListNonRecursive_CacheSnapshot(t *testing.T) {
	cacherGetListNonRecursive(t, true)
}

func TestCacher_CompactRevision(t *testing.T) {
	listFromCacheSnapshot(t, true)
	s := newCacherSetup(t)
	storagetesting.RunTestCompactRevision(s.ctx, t, s.delegator, increaseRV(s.client), s.compact())
}

func TestCacher_GetListRecursivePrefix(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestGetListRecursivePrefix(s.ctx, t, s.delegator)
}

func TestCacher_ListContinuation(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestListContinuation(s.ctx, t, s.delegator, noStorageCalls)
}

func TestCacher_ListPaginationRareObject(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestListPaginationRareObject(s.ctx, t, s.delegator, noStorageCalls)
}

func TestCacher_ListContinuationWithFilter(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestListContinuationWithFilter(s.ctx, t, s.delegator, noStorageCalls)
}

func TestCacher_NamespaceScopedList(t *testing.T) {
	s := newCacherSetup(t, withNodeNameAndNamespaceIndex)
	storagetesting.RunTestNamespaceScopedList(s.ctx, t, s.delegator)
}

func TestCacher_GuaranteedUpdateWithTTL(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithTTL(s.ctx, t, s.delegator)
}

func TestCacher_GuaranteedUpdateWithConflict(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithConflict(s.ctx, t, s.delegator)
}

func TestCacher_GuaranteedUpdateWithSuggestionAndConflict(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(s.ctx, t, s.delegator)
}

func cacherStats(t *testing.T, sizeEstimate bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.SizeBasedListCostEstimate, sizeEstimate)
	s := newCacherSetup(t)
	storagetesting.RunTestStats(s.ctx, t, s.delegator, examplev1ProtoCodec, identity.NewEncryptCheckTransformer(), sizeEstimate)
}

func TestCacher_Stats(t *testing.T)              { cacherStats(t, false) }
func TestCacher_Stats_SizeEstimate(t *testing.T) { cacherStats(t, true) }

func TestCacher_KeySchema(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestKeySchema(s.ctx, t, s.delegator)
}

func TestCacherWatch_Watch(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatch(s.ctx, t, s.delegator)
}

// Upstream compacts here by trimming the watch cache's unexported history; compacting the
// server alone leaves the cache serving the old revisions, so this runs the test up to the
// compaction (it then skips: "compaction callback not provided").
func TestCacherWatch_WatchFromZero(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatchFromZero(s.ctx, t, s.delegator, nil)
}

func TestCacherWatch_DeleteTriggerWatch(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDeleteTriggerWatch(s.ctx, t, s.delegator)
}

func TestCacherWatch_WatchFromNonZero(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatchFromNonZero(s.ctx, t, s.delegator)
}

func TestCacherWatch_DelayedWatchDelivery(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestDelayedWatchDelivery(s.ctx, t, s.delegator)
}

func TestCacherWatch_WatcherTimeout(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatcherTimeout(s.ctx, t, s.delegator)
}

func TestCacherWatch_WatchDeleteEventObjectHaveLatestRV(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(s.ctx, t, s.delegator)
}

func TestCacherWatch_WatchInitializationSignal(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatchInitializationSignal(s.ctx, t, s.delegator)
}

func TestCacherWatch_ClusterScopedWatch(t *testing.T) {
	s := newCacherSetup(t, withClusterScopedKeyFunc, withNodeNameAndNamespaceIndex)
	storagetesting.RunTestClusterScopedWatch(s.ctx, t, s.delegator)
}

func TestCacherWatch_NamespaceScopedWatch(t *testing.T) {
	s := newCacherSetup(t, withNodeNameAndNamespaceIndex)
	storagetesting.RunTestNamespaceScopedWatch(s.ctx, t, s.delegator)
}

func TestCacherWatch_WatchDispatchBookmarkEvents(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestWatchDispatchBookmarkEvents(s.ctx, t, s.delegator, true)
}

func TestCacherWatch_WatchBookmarksWithCorrectResourceVersion(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunTestOptionalWatchBookmarksWithCorrectResourceVersion(s.ctx, t, s.delegator)
}

func TestCacherWatch_SendInitialEventsBackwardCompatibility(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunSendInitialEventsBackwardCompatibility(s.ctx, t, s.delegator)
}

// createWrapper waits after each Create until the cache serves the new object, as upstream's
// wrapper of the same name does for the watch-semantics tests.
type createWrapper struct {
	*cacher.CacheDelegator
}

func (c *createWrapper) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	if err := c.CacheDelegator.Create(ctx, key, obj, out, ttl); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, wait.ForeverTestTimeout, true, func(ctx context.Context) (bool, error) {
		current := newPod()
		err := c.CacheDelegator.Get(ctx, key, storage.GetOptions{ResourceVersion: "0"}, current)
		if err != nil {
			if storage.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		return apiequality.Semantic.DeepEqual(current, out), nil
	})
}

func TestCacherWatch_WatchSemantics(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunWatchSemantics(context.TODO(), t, &createWrapper{s.delegator})
}

func TestCacherWatch_WatchSemanticInitialEventsExtended(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunWatchSemanticInitialEventsExtended(context.TODO(), t, &createWrapper{s.delegator})
}

func TestCacherWatch_WatchListMatchSingle(t *testing.T) {
	s := newCacherSetup(t)
	storagetesting.RunWatchListMatchSingle(context.TODO(), t, &createWrapper{s.delegator})
}
