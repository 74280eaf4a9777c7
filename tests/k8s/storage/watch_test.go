package storage

// The etcd3 store's watch conformance tests: the t.Run cases of TestWatch in k8s.io/apiserver
// v0.37.2's pkg/storage/etcd3/watcher_test.go, one Go test each. ProgressNotify and
// WatchDispatchBookmarkEvents need a server started with --watch-progress-notify-interval=1s
// (upstream sets WatchProgressNotifyInterval on its embedded server); the wrapper does that
// for the tests named in its list.

import (
	"testing"

	"k8s.io/apiserver/pkg/features"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

func TestStoreWatch_Watch(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatch(s.ctx, t, s.store)
}

func TestStoreWatch_ClusterScopedWatch(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestClusterScopedWatch(s.ctx, t, s.store)
}

func TestStoreWatch_NamespaceScopedWatch(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestNamespaceScopedWatch(s.ctx, t, s.store)
}

func TestStoreWatch_DeleteTriggerWatch(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDeleteTriggerWatch(s.ctx, t, s.store)
}

func TestStoreWatch_WatchFromZero(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchFromZero(s.ctx, t, s.store, compactStorage(s.store, s.client.Client))
}

func TestStoreWatch_WatchFromNonZero(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchFromNonZero(s.ctx, t, s.store)
}

func TestStoreWatch_DelayedWatchDelivery(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestDelayedWatchDelivery(s.ctx, t, s.store)
}

func TestStoreWatch_WatchError(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchError(s.ctx, t, s.withPrefixTransformer())
}

func TestStoreWatch_WatchContextCancel(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchContextCancel(s.ctx, t, s.store)
}

func TestStoreWatch_WatcherTimeout(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatcherTimeout(s.ctx, t, s.store)
}

func TestStoreWatch_WatchDeleteEventObjectHaveLatestRV(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(s.ctx, t, s.store)
}

func TestStoreWatch_WatchInitializationSignal(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchInitializationSignal(s.ctx, t, s.store)
}

// Needs --watch-progress-notify-interval=1s on the server.
func TestStoreWatch_ProgressNotify(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunOptionalTestProgressNotify(s.ctx, t, s.store, increaseRV(s.client.Client))
}

// Needs --watch-progress-notify-interval=1s on the server.
func TestStoreWatch_WatchDispatchBookmarkEvents(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunTestWatchDispatchBookmarkEvents(s.ctx, t, s.store, false)
}

func TestStoreWatch_SendInitialEventsBackwardCompatibility(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunSendInitialEventsBackwardCompatibility(s.ctx, t, s.store)
}

func rangeStreamGate(t *testing.T, on bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.EtcdRangeStream, on)
}

func watchSemantics(t *testing.T, rangeStream, concurrentDecode bool) {
	rangeStreamGate(t, rangeStream)
	if concurrentDecode {
		featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ConcurrentWatchObjectDecode, true)
	}
	s := newStoreSetup(t)
	storagetesting.RunWatchSemantics(s.ctx, t, s.store)
}

func TestStoreWatch_WatchSemantics(t *testing.T) { watchSemantics(t, false, false) }
func TestStoreWatch_WatchSemanticsWithConcurrentDecode(t *testing.T) {
	watchSemantics(t, false, true)
}
func TestStoreWatch_WatchSemantics_RangeStream(t *testing.T) { watchSemantics(t, true, false) }
func TestStoreWatch_WatchSemanticsWithConcurrentDecode_RangeStream(t *testing.T) {
	watchSemantics(t, true, true)
}

func watchSemanticInitialEventsExtended(t *testing.T, rangeStream bool) {
	rangeStreamGate(t, rangeStream)
	s := newStoreSetup(t)
	storagetesting.RunWatchSemanticInitialEventsExtended(s.ctx, t, s.store)
}

func TestStoreWatch_WatchSemanticInitialEventsExtended(t *testing.T) {
	watchSemanticInitialEventsExtended(t, false)
}
func TestStoreWatch_WatchSemanticInitialEventsExtended_RangeStream(t *testing.T) {
	watchSemanticInitialEventsExtended(t, true)
}

func watchListMatchSingle(t *testing.T, rangeStream bool) {
	rangeStreamGate(t, rangeStream)
	s := newStoreSetup(t)
	storagetesting.RunWatchListMatchSingle(s.ctx, t, s.store)
}

func TestStoreWatch_WatchListMatchSingle(t *testing.T)             { watchListMatchSingle(t, false) }
func TestStoreWatch_WatchListMatchSingle_RangeStream(t *testing.T) { watchListMatchSingle(t, true) }

func TestStoreWatch_WatchErrorEventIsBlockingFurtherEvent(t *testing.T) {
	s := newStoreSetup(t)
	storagetesting.RunWatchErrorIsBlockingFurtherEvents(s.ctx, t, s.withPrefixTransformer())
}
