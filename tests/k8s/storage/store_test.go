package storage

// The etcd3 store's conformance tests: one Go test per storagetesting.RunTest* call of
// k8s.io/apiserver v0.37.2's pkg/storage/etcd3/store_test.go and watcher_test.go. Where
// upstream runs a test once per feature-gate value (t.Run variants), each variant is its own
// Go test here, so the wrapper gives each a fresh server.
//
// Not here, because they need unexported etcd3 types or fields: the error-aggregation
// tests and WatchWithUnsafeDelete (they inject etcd3's unexported corruptObjectError), and
// the implementation-specific tests upstream lists after the conformance ones
// (TestLeaseMaxObjectCount, TestPrefix, TestPrepareKey, getKeys, growSlice, ...).

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"k8s.io/apimachinery/pkg/api/apitesting"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

func TestStore_Create(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestCreate(s.ctx, t, s.store, s.checkStorageInvariants())
}

func TestStore_CreateWithTTL(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestCreateWithTTL(s.ctx, t, s.store)
}

func TestStore_CreateWithKeyExist(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestCreateWithKeyExist(s.ctx, t, s.store)
}

func TestStore_Get(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGet(s.ctx, t, s.store)
}

func TestStore_UnconditionalDelete(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestUnconditionalDelete(s.ctx, t, s.store)
}

func TestStore_ConditionalDelete(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestConditionalDelete(s.ctx, t, s.store)
}

func TestStore_DeleteWithSuggestion(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteWithSuggestion(s.ctx, t, s.store)
}

func TestStore_DeleteWithSuggestionAndConflict(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteWithSuggestionAndConflict(s.ctx, t, s.store)
}

func TestStore_DeleteWithSuggestionOfDeletedObject(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(s.ctx, t, s.store)
}

func TestStore_ValidateDeletionWithSuggestion(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestValidateDeletionWithSuggestion(s.ctx, t, s.store)
}

func TestStore_ValidateDeletionWithOnlySuggestionValid(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestValidateDeletionWithOnlySuggestionValid(s.ctx, t, s.store)
}

func TestStore_DeleteWithConflict(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteWithConflict(s.ctx, t, s.store)
}

// failingTransformer fails every read from storage while set (upstream's testTransformer).
type failingTransformer struct {
	value.Transformer
	fail atomic.Bool
}

func (f *failingTransformer) setFailing(c bool) { f.fail.Store(c) }

func (f *failingTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	if f.fail.Load() {
		return nil, false, errors.New("synthetic error")
	}
	return f.Transformer.TransformFromStorage(ctx, data, dataCtx)
}

// failingCodec fails every decode while set (upstream's testCodec).
type failingCodec struct {
	runtime.Codec
	fail atomic.Bool
}

func (f *failingCodec) setFailing(c bool) { f.fail.Store(c) }

func (f *failingCodec) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if f.fail.Load() {
		return nil, nil, errors.New("synthetic error")
	}
	return f.Codec.Decode(data, defaults, into)
}

func TestStore_DeleteWithConflictAndMissingExpectedTransformOrDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	codec := &failingCodec{Codec: apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion)}
	s := newStoreSetup(t, withCodec(codec))
	storagetesting.RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError(s.ctx, t, s.store, codec.setFailing)
}

func TestStore_DeleteWithConflictAndExpectedTransformError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	tr := &failingTransformer{Transformer: storagetesting.NewPrefixTransformer([]byte(defaultTestPrefix), false)}
	s := newStoreSetup(t, withTransformer(tr))
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(s.ctx, t, s.store, tr.setFailing)
}

func TestStore_DeleteWithConflictAndExpectedDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	codec := &failingCodec{Codec: apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion)}
	s := newStoreSetup(t, withCodec(codec))
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(s.ctx, t, s.store, codec.setFailing)
}

func TestStore_DeleteWithSuggestionAndMissingExpectedTransformOrDecodeFailure(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(s.ctx, t, s.store)
}

func TestStore_PreconditionalDeleteWithSuggestion(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestPreconditionalDeleteWithSuggestion(s.ctx, t, s.store)
}

func TestStore_PreconditionalDeleteWithSuggestionPass(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass(s.ctx, t, s.store)
}

func TestStore_ListPaging(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestListPaging(s.ctx, t, s.store)
}

func TestStore_GetListNonRecursive(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGetListNonRecursive(s.ctx, t, increaseRV(s.client.Client), s.store)
}

func TestStore_GetListRecursivePrefix(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGetListRecursivePrefix(s.ctx, t, s.store)
}

func TestStore_KeySchema(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestKeySchema(s.ctx, t, s.store)
}

func TestStore_GuaranteedUpdate(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGuaranteedUpdate(s.ctx, t, s.withPrefixTransformer(), s.checkStorageInvariants())
}

func TestStore_GuaranteedUpdateWithTTL(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithTTL(s.ctx, t, s.store)
}

func TestStore_GuaranteedUpdateChecksStoredData(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGuaranteedUpdateChecksStoredData(s.ctx, t, s.withPrefixTransformer())
}

func TestStore_GuaranteedUpdateWithConflict(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithConflict(s.ctx, t, s.store)
}

func TestStore_GuaranteedUpdateWithSuggestionAndConflict(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(s.ctx, t, s.store)
}

func TestStore_TransformationFailure(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestTransformationFailure(s.ctx, t, s.withPrefixTransformer())
}

// storeList runs RunTestList with EtcdRangeStream set as given. Upstream also checks whether
// the lists went through RangeStream; that is whether the server has etcd 3.7's RangeStream,
// which etcd 3.6 has not (the store falls back to paginated Ranges), so it is not checked here.
func storeList(t *testing.T, rangeStream bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.EtcdRangeStream, rangeStream)
	s := newStoreSetup(t)
	storagetesting.RunTestList(s.ctx, t, s.store, compactStorage(s.store, s.client.Client), false, s.client.Kubernetes.(*storagetesting.KubernetesRecorder))
}

func TestStore_List(t *testing.T)             { storeList(t, false) }
func TestStore_List_RangeStream(t *testing.T) { storeList(t, true) }

func storeConsistentList(t *testing.T, rangeStream bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.EtcdRangeStream, rangeStream)
	s := newStoreSetup(t)
	storagetesting.RunTestConsistentList(s.ctx, t, s.store, increaseRV(s.client.Client), false, true, false)
}

func TestStore_ConsistentList(t *testing.T)             { storeConsistentList(t, false) }
func TestStore_ConsistentList_RangeStream(t *testing.T) { storeConsistentList(t, true) }

func TestStore_CompactRevision(t *testing.T) {
	// The store must observe compactions made by others: its watch on the compact key exists
	// with ListFromCacheSnapshot.
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, true)
	s := newStoreSetup(t)
	storagetesting.RunTestCompactRevision(s.ctx, t, s.store, increaseRV(s.client.Client), compactStorage(s.store, s.client.Client))
}

// checkStorageCalls checks how many objects the store decoded and how many Range calls it
// made for a paginated list (upstream's checkStorageCallsInvariants).
func (s *storeSetup) checkStorageCalls() storagetesting.CallsValidation {
	recorder := s.client.KV.(*storagetesting.KVRecorder)
	return func(t *testing.T, pageSize, estimatedProcessedObjects uint64) {
		if reads := s.prefixTransformer.GetReadsAndReset(); reads != estimatedProcessedObjects {
			t.Errorf("unexpected reads: %d, expected: %d", reads, estimatedProcessedObjects)
		}
		estimatedGetCalls := uint64(1)
		if pageSize != 0 {
			// The store doubles the page size while pages come back short, up to maxLimit
			// (10000 in etcd3/store.go): n+1 calls for the smallest n with
			// pageSize * (1 + 2 + ... + 2^n) >= objects.
			const maxLimit = 10000
			currLimit := pageSize
			for sum := uint64(1); sum < estimatedProcessedObjects; {
				currLimit *= 2
				if currLimit > maxLimit {
					currLimit = maxLimit
				}
				sum += currLimit
				estimatedGetCalls++
			}
		}
		if reads := recorder.GetReadsAndReset() + recorder.GetStreamReadsAndReset(); reads != estimatedGetCalls {
			t.Fatalf("unexpected reads: %d, want: %d", reads, estimatedGetCalls)
		}
	}
}

// The call-counting tests expect one kind of list request. With EtcdRangeStream on, the first
// list of a process first tries etcd 3.7's RangeStream, which etcd 3.6 (and Bramble) refuse
// as Unimplemented, and that refused call counts as a read: so the gate is off for them, as
// kube-apiserver ends up after that first probe against a 3.6 server.
func TestStore_ListContinuation(t *testing.T) {
	rangeStreamGate(t, false)
	s := newStoreSetup(t)
	storagetesting.RunTestListContinuation(s.ctx, t, s.store, s.checkStorageCalls())
}

func TestStore_ListPaginationRareObject(t *testing.T) {
	// Upstream: ListFromCacheSnapshot adds a Get of the compact key the call count would see.
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, false)
	rangeStreamGate(t, false)
	s := newStoreSetup(t)
	storagetesting.RunTestListPaginationRareObject(s.ctx, t, s.store, s.checkStorageCalls())
}

func TestStore_ListContinuationWithFilter(t *testing.T) {
	rangeStreamGate(t, false)
	s := newStoreSetup(t)
	storagetesting.RunTestListContinuationWithFilter(s.ctx, t, s.store, s.checkStorageCalls())
}

func TestStore_NamespaceScopedList(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestNamespaceScopedList(s.ctx, t, s.store)
}

func TestStore_ListInconsistentContinuation(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestListInconsistentContinuation(s.ctx, t, s.store, compactStorage(s.store, s.client.Client))
}

func TestStore_ListResourceVersionMatch(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestListResourceVersionMatch(s.ctx, t, s.withPrefixTransformer())
}

// storeStats runs RunTestStats. With size estimation on, the store keeps the object sizes it
// learnt from lists and prunes them with the keys a keys-only range of the resource prefix
// returns (upstream passes the store's unexported getKeys, which makes the same request).
func storeStats(t *testing.T, sizeEstimate bool) {
	s := newStoreSetup(t)
	if sizeEstimate {
		if err := s.store.EnableResourceSizeEstimation(s.getKeys); err != nil {
			t.Fatal(err)
		}
	}
	storagetesting.RunTestStats(s.ctx, t, s.store, s.codec, s.transformer, sizeEstimate)
}

// getKeys lists the keys under the store's resource prefix, keys only.
func (s *storeSetup) getKeys(ctx context.Context) ([]string, error) {
	resp, err := s.client.KV.Get(ctx, s.prefix+"/pods/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys, nil
}

func TestStore_Stats(t *testing.T)              { storeStats(t, false) }
func TestStore_Stats_SizeEstimate(t *testing.T) { storeStats(t, true) }
