// The client-go workload tests/tests/kube_apiserver.rs drives against a real kube-apiserver
// whose storage is a Bramble (or an etcd 3.6) cluster. One phase per run:
//
//	workload -server URL -token T -ca FILE -ledger FILE basic
//	workload ... churn -n 10000 -workers 16
//	workload ... writer -workers 4 -stop FILE
//	workload ... verify -ledger a.jsonl,b.jsonl
//
// Every phase prints JSON lines on stdout: {"check": ..., "ok": ..., "detail": ...} for each
// check, then one {"result": ...} line; it exits 1 if a check failed. Every acknowledged write
// is appended to the ledger (one JSON line, the last line for an object wins) so that `verify`
// can GET each object after the faults and list each collection: no acknowledged object may
// be lost, and each must hold a value in the ledger's [min, max] (max > min only while a write
// was in flight when the writer stopped).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// The annotation every object carries: the value the ledger records.
const valueKey = "bramble.dev/v"

// The label every object of a run carries, for selective lists.
const runLabel = "bramble.dev/run"

var (
	server  = flag.String("server", "", "kube-apiserver URL (https://127.0.0.1:PORT)")
	token   = flag.String("token", "", "bearer token")
	caFile  = flag.String("ca", "", "CA file for the apiserver's serving certificate")
	ledger  = flag.String("ledger", "", "ledger file (JSON lines); verify takes a comma-separated list")
	runID   = flag.String("run", "r", "run id: names and labels of this run's objects")
	n       = flag.Int("n", 10000, "churn: objects")
	workers = flag.Int("workers", 16, "churn and writer: concurrent clients")
	stop    = flag.String("stop", "", "writer: stop once this file exists")
)

var (
	kube   *kubernetes.Clientset
	dyn    *dynamic.DynamicClient
	apiext *apiextclient.Clientset
	failed atomic.Bool
	outMu  sync.Mutex
)

var (
	gvrNamespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrConfigMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrSecrets     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	gvrDeployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrWidgets     = schema.GroupVersionResource{Group: "bramble.dev", Version: "v1", Resource: "widgets"}
)

var resources = map[string]schema.GroupVersionResource{
	"namespaces":          gvrNamespaces,
	"configmaps":          gvrConfigMaps,
	"secrets":             gvrSecrets,
	"deployments.apps":    gvrDeployments,
	"widgets.bramble.dev": gvrWidgets,
}

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Println(string(b))
}

func check(name string, ok bool, detail string, args ...any) {
	if !ok {
		failed.Store(true)
	}
	emit(map[string]any{"check": name, "ok": ok, "detail": fmt.Sprintf(detail, args...)})
}

func fatal(format string, args ...any) {
	check("fatal", false, format, args...)
	os.Exit(1)
}

func nowMs() int64 { return time.Now().UnixMilli() }

// Ledger is the append-only record of acknowledged writes.
type Ledger struct {
	mu sync.Mutex
	f  *os.File
}

// Entry is one ledger line.
type Entry struct {
	Res     string `json:"res"`
	NS      string `json:"ns"`
	Name    string `json:"name"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	Deleted bool   `json:"deleted,omitempty"`
	TMs     int64  `json:"t_ms"`
	// SentMs is when the acknowledged attempt was sent (writer only): an attempt sent
	// before a fault may be acknowledged after it.
	SentMs int64 `json:"sent_ms,omitempty"`
}

func openLedger(path string) *Ledger {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fatal("open ledger %s: %v", path, err)
	}
	return &Ledger{f: f}
}

func (l *Ledger) record(e Entry) {
	e.TMs = nowMs()
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		fatal("write ledger: %v", err)
	}
}

func main() {
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: workload [flags] basic|churn|writer|verify")
		os.Exit(2)
	}
	cfg := &rest.Config{
		Host:            *server,
		BearerToken:     *token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: *caFile},
		QPS:             -1, // no client-side rate limit: the workload measures the server
		Timeout:         15 * time.Second,
	}
	var err error
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		fatal("dynamic client: %v", err)
	}
	if apiext, err = apiextclient.NewForConfig(cfg); err != nil {
		fatal("apiextensions client: %v", err)
	}
	proto := rest.CopyConfig(cfg)
	proto.ContentType = "application/vnd.kubernetes.protobuf"
	if kube, err = kubernetes.NewForConfig(proto); err != nil {
		fatal("client: %v", err)
	}
	ctx := context.Background()
	switch flag.Arg(0) {
	case "basic":
		basic(ctx, openLedger(*ledger))
	case "churn":
		churn(ctx, openLedger(*ledger))
	case "writer":
		writer(ctx, openLedger(*ledger))
	case "verify":
		verify(ctx, strings.Split(*ledger, ","))
	default:
		fatal("unknown phase %q", flag.Arg(0))
	}
	if failed.Load() {
		os.Exit(1)
	}
}

func meta(name string, v int) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{runLabel: *runID},
		Annotations: map[string]string{valueKey: strconv.Itoa(v)},
	}
}

func createNamespace(ctx context.Context, l *Ledger, name string) *corev1.Namespace {
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: meta(name, 0)}, metav1.CreateOptions{})
	if err != nil {
		fatal("create namespace %s: %v", name, err)
	}
	l.record(Entry{Res: "namespaces", Name: name})
	return ns
}

// ---------------------------------------------------------------------------------------
// basic: every kind of object, conflicts, pagination, watch with bookmarks.

func basic(ctx context.Context, l *Ledger) {
	start := time.Now()
	ns := "basic-" + *runID
	createNamespace(ctx, l, ns)
	const count = 20
	for i := 0; i < count; i++ {
		name := fmt.Sprintf("cm-%02d", i)
		cm := &corev1.ConfigMap{ObjectMeta: meta(name, 0), Data: map[string]string{"k": name}}
		if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			fatal("create configmap %s: %v", name, err)
		}
		l.record(Entry{Res: "configmaps", NS: ns, Name: name})
		sname := fmt.Sprintf("secret-%02d", i)
		s := &corev1.Secret{ObjectMeta: meta(sname, 0), Data: map[string][]byte{"password": []byte("s3cr3t-" + sname)}}
		if _, err := kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			fatal("create secret %s: %v", sname, err)
		}
		l.record(Entry{Res: "secrets", NS: ns, Name: sname})
	}
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("deploy-%d", i)
		labels := map[string]string{"app": name}
		replicas := int32(2)
		d := &appsv1.Deployment{
			ObjectMeta: meta(name, 0),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "pause", Image: "registry.k8s.io/pause:3.10",
					}}},
				},
			},
		}
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			fatal("create deployment %s: %v", name, err)
		}
		l.record(Entry{Res: "deployments.apps", NS: ns, Name: name})
	}
	check("create_builtin", true, "%d configmaps, %d secrets, 5 deployments in %s", count, count, ns)

	// A CRD, then custom objects once it is established and served.
	crdStart := time.Now()
	createCRD(ctx)
	established := time.Since(crdStart)
	for i := 0; i < count; i++ {
		name := fmt.Sprintf("widget-%02d", i)
		w := widget(name, 0)
		err := retryFor(30*time.Second, func() error {
			_, err := dyn.Resource(gvrWidgets).Namespace(ns).Create(ctx, w, metav1.CreateOptions{})
			return err
		})
		if err != nil {
			fatal("create widget %s: %v", name, err)
		}
		l.record(Entry{Res: "widgets.bramble.dev", NS: ns, Name: name})
	}
	check("crd", true, "widgets.bramble.dev established in %v, %d widgets", established.Round(time.Millisecond), count)

	conflicts(ctx, l, ns)
	pagination(ctx, l, ns)
	watchBookmarks(ctx, l, ns)

	// A deleted object stays deleted through the faults.
	if err := kube.CoreV1().ConfigMaps(ns).Delete(ctx, "cm-19", metav1.DeleteOptions{}); err != nil {
		fatal("delete cm-19: %v", err)
	}
	l.record(Entry{Res: "configmaps", NS: ns, Name: "cm-19", Deleted: true})
	_, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "cm-19", metav1.GetOptions{})
	check("delete", apierrors.IsNotFound(err), "GET after DELETE: %v", err)
	emit(map[string]any{"result": map[string]any{"phase": "basic", "ms": time.Since(start).Milliseconds()}})
}

func createCRD(ctx context.Context) {
	preserve := true
	crd := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.bramble.dev"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "bramble.dev",
			Names: apiextv1.CustomResourceDefinitionNames{
				Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList",
			},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: &preserve},
					},
				}},
			}},
		},
	}
	_, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		fatal("create CRD: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err == nil {
			for _, c := range got.Status.Conditions {
				if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			fatal("CRD not established after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func widget(name string, v int) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "bramble.dev/v1",
		"kind":       "Widget",
		"metadata": map[string]any{
			"name":        name,
			"labels":      map[string]any{runLabel: *runID},
			"annotations": map[string]any{valueKey: strconv.Itoa(v)},
		},
		"spec": map[string]any{"size": int64(len(name)), "color": "green"},
	}}
	return u
}

// retryFor retries f while it fails, for up to d (a CRD's handler appears a moment after it
// is established; writes fail for a moment while the cluster elects a leader).
func retryFor(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// conflicts: an update with a stale resourceVersion gets 409 Conflict; a get-and-retry
// succeeds. For a ConfigMap (protobuf), a Deployment and a custom object (JSON).
func conflicts(ctx context.Context, l *Ledger, ns string) {
	cms := kube.CoreV1().ConfigMaps(ns)
	stale, err := cms.Get(ctx, "cm-00", metav1.GetOptions{})
	if err != nil {
		fatal("get cm-00: %v", err)
	}
	fresh := stale.DeepCopy()
	fresh.Annotations[valueKey] = "1"
	if _, err := cms.Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
		fatal("update cm-00: %v", err)
	}
	l.record(Entry{Res: "configmaps", NS: ns, Name: "cm-00", Min: 1, Max: 1})
	stale.Annotations[valueKey] = "99"
	_, err = cms.Update(ctx, stale, metav1.UpdateOptions{})
	check("conflict_configmap", apierrors.IsConflict(err), "stale resourceVersion %s: %v", stale.ResourceVersion, err)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cms.Get(ctx, "cm-00", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Annotations[valueKey] = "2"
		_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	check("conflict_retry_configmap", err == nil, "get and retry: %v", err)
	if err == nil {
		l.record(Entry{Res: "configmaps", NS: ns, Name: "cm-00", Min: 2, Max: 2})
	}

	deps := kube.AppsV1().Deployments(ns)
	d, err := deps.Get(ctx, "deploy-0", metav1.GetOptions{})
	if err != nil {
		fatal("get deploy-0: %v", err)
	}
	d1 := d.DeepCopy()
	d1.Annotations[valueKey] = "1"
	if _, err := deps.Update(ctx, d1, metav1.UpdateOptions{}); err != nil {
		fatal("update deploy-0: %v", err)
	}
	l.record(Entry{Res: "deployments.apps", NS: ns, Name: "deploy-0", Min: 1, Max: 1})
	d.Annotations[valueKey] = "99"
	_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
	check("conflict_deployment", apierrors.IsConflict(err), "stale resourceVersion %s: %v", d.ResourceVersion, err)

	ws := dyn.Resource(gvrWidgets).Namespace(ns)
	w, err := ws.Get(ctx, "widget-00", metav1.GetOptions{})
	if err != nil {
		fatal("get widget-00: %v", err)
	}
	w1 := w.DeepCopy()
	w1.SetAnnotations(map[string]string{valueKey: "1"})
	if _, err := ws.Update(ctx, w1, metav1.UpdateOptions{}); err != nil {
		fatal("update widget-00: %v", err)
	}
	l.record(Entry{Res: "widgets.bramble.dev", NS: ns, Name: "widget-00", Min: 1, Max: 1})
	w.SetAnnotations(map[string]string{valueKey: "99"})
	_, err = ws.Update(ctx, w, metav1.UpdateOptions{})
	check("conflict_custom", apierrors.IsConflict(err), "stale resourceVersion %s: %v", w.GetResourceVersion(), err)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := ws.Get(ctx, "widget-00", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.SetAnnotations(map[string]string{valueKey: "2"})
		_, err = ws.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	check("conflict_retry_custom", err == nil, "get and retry: %v", err)
	if err == nil {
		l.record(Entry{Res: "widgets.bramble.dev", NS: ns, Name: "widget-00", Min: 2, Max: 2})
	}
}

// pagination: lists with limit+continue return every object exactly once, all pages at the
// first page's resourceVersion, and an object created between pages is not in the list.
func pagination(ctx context.Context, l *Ledger, ns string) {
	for _, res := range []schema.GroupVersionResource{gvrConfigMaps, gvrSecrets, gvrWidgets} {
		seen := map[string]int{}
		opts := metav1.ListOptions{Limit: 7, LabelSelector: runLabel + "=" + *runID}
		pages, listRV := 0, ""
		for {
			list, err := dyn.Resource(res).Namespace(ns).List(ctx, opts)
			if err != nil {
				fatal("list %s page %d: %v", res.Resource, pages, err)
			}
			pages++
			if listRV == "" {
				listRV = list.GetResourceVersion()
				// Created after the first page: a paged list is a snapshot, so it must not show.
				if res == gvrConfigMaps {
					cm := &corev1.ConfigMap{ObjectMeta: meta("cm-late", 0)}
					if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
						fatal("create cm-late: %v", err)
					}
					l.record(Entry{Res: "configmaps", NS: ns, Name: "cm-late"})
				}
			} else if list.GetResourceVersion() != listRV {
				check("pagination_rv", false, "%s page %d at RV %s, first page at %s", res.Resource, pages, list.GetResourceVersion(), listRV)
			}
			for _, it := range list.Items {
				seen[it.GetName()]++
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
		dups := []string{}
		for name, c := range seen {
			if c != 1 {
				dups = append(dups, name)
			}
		}
		_, late := seen["cm-late"]
		want := 20
		check("pagination_"+res.Resource, len(seen) == want && len(dups) == 0 && !late,
			"%d pages of 7, %d distinct objects (want %d), duplicates %v, object created between pages listed: %v",
			pages, len(seen), want, dups, late)
	}
}

// watchBookmarks: a watch from a list's resourceVersion with allowWatchBookmarks sees the
// updates made after it in order, then a bookmark (the watch cache sends one 2 s before the
// watch's timeout, else about once a minute).
func watchBookmarks(ctx context.Context, l *Ledger, ns string) {
	cms := kube.CoreV1().ConfigMaps(ns)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: runLabel + "=" + *runID})
	if err != nil {
		fatal("list for watch: %v", err)
	}
	timeout := int64(12)
	w, err := cms.Watch(ctx, metav1.ListOptions{
		ResourceVersion:     list.ResourceVersion,
		AllowWatchBookmarks: true,
		TimeoutSeconds:      &timeout,
		LabelSelector:       runLabel + "=" + *runID,
	})
	if err != nil {
		fatal("watch from %s: %v", list.ResourceVersion, err)
	}
	defer w.Stop()
	started := time.Now()
	var want []string
	for i := 1; i <= 10; i++ {
		name := fmt.Sprintf("cm-%02d", i)
		cur, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			fatal("get %s: %v", name, err)
		}
		cur.Annotations[valueKey] = "1"
		upd, err := cms.Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			fatal("update %s: %v", name, err)
		}
		l.record(Entry{Res: "configmaps", NS: ns, Name: name, Min: 1, Max: 1})
		want = append(want, name+"@"+upd.ResourceVersion)
	}
	var got []string
	var bookmark string
	var bookmarkAfter time.Duration
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Bookmark:
			if bookmark == "" {
				bookmark = ev.Object.(*corev1.ConfigMap).ResourceVersion
				bookmarkAfter = time.Since(started)
			}
		case watch.Error:
			check("watch_error", false, "%v", apierrors.FromObject(ev.Object))
		default:
			cm := ev.Object.(*corev1.ConfigMap)
			got = append(got, cm.Name+"@"+cm.ResourceVersion)
		}
		if len(got) >= len(want) && bookmark != "" {
			break
		}
	}
	check("watch_order", strings.Join(got, ",") == strings.Join(want, ","), "events %v, updates %v", got, want)
	last, _ := strconv.ParseUint(strings.SplitN(want[len(want)-1], "@", 2)[1], 10, 64)
	brv, _ := strconv.ParseUint(bookmark, 10, 64)
	check("watch_bookmark", bookmark != "" && brv >= last,
		"bookmark at RV %q after %v (last update at RV %d)", bookmark, bookmarkAfter.Round(time.Millisecond), last)
}

// ---------------------------------------------------------------------------------------
// churn: n ConfigMaps created, updated and listed by `workers` clients while a watch sees
// every event.

type latencies struct {
	mu sync.Mutex
	ms map[string][]float64
}

func (l *latencies) add(op string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ms[op] = append(l.ms[op], float64(d.Microseconds())/1000)
}

func (l *latencies) summary() map[string]any {
	out := map[string]any{}
	for op, v := range l.ms {
		sort.Float64s(v)
		q := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
		out[op] = map[string]any{"count": len(v), "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": v[len(v)-1]}
	}
	return out
}

func parallel(count, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

func churn(ctx context.Context, l *Ledger) {
	ns := "churn-" + *runID
	nsObj := createNamespace(ctx, l, ns)
	lat := &latencies{ms: map[string][]float64{}}
	cms := kube.CoreV1().ConfigMaps(ns)
	name := func(i int) string { return fmt.Sprintf("churn-%05d", i) }
	started := make([]time.Time, 2*(*n)) // per write: when it was sent (creates, then updates)
	var startedMu sync.Mutex
	setStarted := func(i int, t time.Time) {
		startedMu.Lock()
		started[i] = t
		startedMu.Unlock()
	}

	// The watch, from the namespace's resourceVersion: every create and update, in order.
	type seenEv struct {
		at time.Time
		ev watch.EventType
		rv uint64
	}
	events := make(chan seenEv, 4*(*n))
	watchErr := make(chan string, 1)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		rv := nsObj.ResourceVersion
		restarts := 0
		got := 0
		for got < 2*(*n) {
			timeout := int64(300)
			w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout})
			if err != nil {
				watchErr <- fmt.Sprintf("watch from %s: %v", rv, err)
				return
			}
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified:
					cm := ev.Object.(*corev1.ConfigMap)
					r, _ := strconv.ParseUint(cm.ResourceVersion, 10, 64)
					events <- seenEv{at: time.Now(), ev: ev.Type, rv: r}
					rv = cm.ResourceVersion
					got++
				case watch.Bookmark:
					rv = ev.Object.(*corev1.ConfigMap).ResourceVersion
				case watch.Error:
					watchErr <- fmt.Sprintf("watch error: %v", apierrors.FromObject(ev.Object))
					w.Stop()
					return
				default:
					watchErr <- fmt.Sprintf("unexpected %s event", ev.Type)
				}
				if got >= 2*(*n) {
					break
				}
			}
			w.Stop()
			restarts++
		}
		emit(map[string]any{"check": "churn_watch_restarts", "ok": true, "detail": fmt.Sprintf("%d watch restarts", restarts-1)})
	}()

	begin := time.Now()
	rvOf := make([]string, 2*(*n))
	objs := make([]*corev1.ConfigMap, *n)
	var errs atomic.Int64
	parallel(*n, *workers, func(i int) {
		cm := &corev1.ConfigMap{ObjectMeta: meta(name(i), 0), Data: map[string]string{"payload": strings.Repeat("x", 256)}}
		t := time.Now()
		setStarted(i, t)
		got, err := cms.Create(ctx, cm, metav1.CreateOptions{})
		lat.add("create", time.Since(t))
		if err != nil {
			errs.Add(1)
			emit(map[string]any{"check": "churn_create", "ok": false, "detail": err.Error()})
			return
		}
		objs[i] = got
		startedMu.Lock()
		rvOf[i] = got.ResourceVersion
		startedMu.Unlock()
	})
	created := time.Since(begin)
	parallel(*n, *workers, func(i int) {
		if objs[i] == nil {
			return
		}
		cm := objs[i].DeepCopy()
		cm.Annotations[valueKey] = "1"
		t := time.Now()
		setStarted(*n+i, t)
		got, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
		lat.add("update", time.Since(t))
		if err != nil {
			errs.Add(1)
			emit(map[string]any{"check": "churn_update", "ok": false, "detail": err.Error()})
			return
		}
		startedMu.Lock()
		rvOf[*n+i] = got.ResourceVersion
		startedMu.Unlock()
	})
	updated := time.Since(begin) - created
	check("churn_writes", errs.Load() == 0, "%d creates and %d updates, %d errors", *n, *n, errs.Load())
	for i := 0; i < *n; i++ {
		if objs[i] != nil {
			l.record(Entry{Res: "configmaps", NS: ns, Name: name(i), Min: 1, Max: 1})
		}
	}

	// Lists: the whole namespace in pages of 500, a few times; every object once.
	listStart := time.Now()
	for round := 0; round < 5; round++ {
		seen := map[string]int{}
		opts := metav1.ListOptions{Limit: 500}
		full := time.Now()
		for {
			t := time.Now()
			list, err := cms.List(ctx, opts)
			lat.add("list_page_500", time.Since(t))
			if err != nil {
				fatal("churn list: %v", err)
			}
			for _, it := range list.Items {
				seen[it.Name]++
			}
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
		lat.add("list_full", time.Since(full))
		once := true
		for _, c := range seen {
			once = once && c == 1
		}
		if round == 0 {
			check("churn_list", len(seen) == *n && once, "%d distinct objects listed, each once: %v", len(seen), once)
		}
	}
	listed := time.Since(listStart)

	// The watch: every write's event, in resourceVersion order.
	byRV := map[uint64]int{}
	for i, rv := range rvOf {
		if rv != "" {
			r, _ := strconv.ParseUint(rv, 10, 64)
			byRV[r] = i
		}
	}
	var last uint64
	inOrder, matched := true, 0
	deadline := time.After(120 * time.Second)
	for matched < 2*(*n) {
		select {
		case e := <-events:
			if e.rv <= last {
				inOrder = false
			}
			last = e.rv
			if i, ok := byRV[e.rv]; ok {
				matched++
				startedMu.Lock()
				lat.add("watch_delivery", e.at.Sub(started[i]))
				startedMu.Unlock()
			}
		case msg := <-watchErr:
			check("churn_watch", false, "%s", msg)
			matched = 2 * (*n)
		case <-deadline:
			check("churn_watch", false, "after 120 s the watch saw %d of %d events", matched, 2*(*n))
			matched = 2 * (*n)
		}
	}
	check("churn_watch_order", inOrder, "watch events in resourceVersion order")
	check("churn_watch_all", len(byRV) == 2*(*n), "%d writes acknowledged, each seen by the watch", len(byRV))
	emit(map[string]any{"result": map[string]any{
		"phase": "churn", "n": *n, "workers": *workers,
		"create_ms": created.Milliseconds(), "update_ms": updated.Milliseconds(), "list_ms": listed.Milliseconds(),
		"total_ms": time.Since(begin).Milliseconds(), "ops": lat.summary(),
	}})
}

// ---------------------------------------------------------------------------------------
// writer: `workers` clients create and then update ConfigMaps until the stop file appears,
// retrying every failed write until it is acknowledged (the cluster may be down for a while).

func writer(ctx context.Context, l *Ledger) {
	ns := "writer-" + *runID
	createNamespace(ctx, l, ns)
	cms := kube.CoreV1().ConfigMaps(ns)
	stopped := func() bool {
		_, err := os.Stat(*stop)
		return err == nil
	}
	var acked, failures atomic.Int64
	var mu sync.Mutex
	lastOK := time.Now()
	var maxGap time.Duration
	var down bool
	var downErrs int
	ok := func() {
		acked.Add(1)
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if gap := now.Sub(lastOK); gap > maxGap {
			maxGap = gap
		}
		if down {
			emit(map[string]any{"event": "recovered", "t_ms": now.UnixMilli(), "down_ms": now.Sub(lastOK).Milliseconds(), "errors": downErrs})
			down = false
		}
		lastOK = now
	}
	fail := func(op string, err error) {
		failures.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if !down {
			emit(map[string]any{"event": "error", "t_ms": nowMs(), "op": op, "err": err.Error()})
			down, downErrs = true, 0
		}
		downErrs++
		time.Sleep(50 * time.Millisecond)
	}
	// until retries op until it succeeds (returning when the successful attempt was
	// sent, unix ms) or the writer is stopped (returning 0).
	until := func(opName string, op func() error) int64 {
		for {
			sent := nowMs()
			err := op()
			if err == nil {
				ok()
				return sent
			}
			fail(opName, err)
			if stopped() {
				return 0
			}
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stopped(); seq++ {
				name := fmt.Sprintf("w%d-%06d", w, seq)
				// Create (v=0): a retry after an ambiguous failure finds it already there.
				l.record(Entry{Res: "configmaps", NS: ns, Name: name, Min: -1, Max: 0})
				created := until("create", func() error {
					_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta(name, 0)}, metav1.CreateOptions{})
					if apierrors.IsAlreadyExists(err) {
						return nil
					}
					return err
				})
				if created == 0 {
					return
				}
				l.record(Entry{Res: "configmaps", NS: ns, Name: name, Min: 0, Max: 0, SentMs: created})
				// Update (v=1) through a fresh read, as controllers do.
				l.record(Entry{Res: "configmaps", NS: ns, Name: name, Min: 0, Max: 1})
				updated := until("update", func() error {
					cur, err := cms.Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return err
					}
					if cur.Annotations[valueKey] == "1" {
						return nil
					}
					cur.Annotations[valueKey] = "1"
					_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
					return err
				})
				if updated == 0 {
					return
				}
				l.record(Entry{Res: "configmaps", NS: ns, Name: name, Min: 1, Max: 1, SentMs: updated})
			}
		}()
	}
	wg.Wait()
	emit(map[string]any{"result": map[string]any{
		"phase": "writer", "acked": acked.Load(), "failures": failures.Load(), "max_gap_ms": maxGap.Milliseconds(),
	}})
}

// ---------------------------------------------------------------------------------------
// verify: every ledger object GETs with a value in [min, max] (deleted ones are NotFound),
// and a paged list of each collection shows each exactly once.

func verify(ctx context.Context, paths []string) {
	type key struct{ res, ns, name string }
	last := map[key]Entry{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			fatal("read ledger %s: %v", p, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line == "" {
				continue
			}
			var e Entry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				fatal("ledger %s: %q: %v", p, line, err)
			}
			last[key{e.Res, e.NS, e.Name}] = e
		}
	}
	keys := make([]key, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	var mu sync.Mutex
	var lost, wrong []string
	start := time.Now()
	lat := &latencies{ms: map[string][]float64{}}
	parallel(len(keys), *workers, func(i int) {
		k := keys[i]
		e := last[k]
		var obj *unstructured.Unstructured
		var err error
		t := time.Now()
		err = retryFor(30*time.Second, func() error {
			obj, err = dyn.Resource(resources[k.res]).Namespace(k.ns).Get(ctx, k.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
		lat.add("get", time.Since(t))
		mu.Lock()
		defer mu.Unlock()
		id := k.res + "/" + k.ns + "/" + k.name
		switch {
		case err != nil:
			wrong = append(wrong, fmt.Sprintf("%s: %v", id, err))
		case e.Deleted:
			if obj != nil && obj.GetName() != "" {
				wrong = append(wrong, id+": deleted, but still there")
			}
		case obj == nil || obj.GetName() == "":
			if e.Min >= 0 {
				lost = append(lost, id)
			}
		default:
			v, err := strconv.Atoi(obj.GetAnnotations()[valueKey])
			if err != nil || v < e.Min || v > e.Max {
				wrong = append(wrong, fmt.Sprintf("%s: value %q, acknowledged [%d, %d]", id, obj.GetAnnotations()[valueKey], e.Min, e.Max))
			}
		}
	})
	check("verify_get", len(lost) == 0 && len(wrong) == 0, "%d objects: lost %d %v, wrong %d %v",
		len(keys), len(lost), first(lost), len(wrong), first(wrong))

	// Lists: each collection of the ledger, in pages of 500.
	type coll struct{ res, ns string }
	expect := map[coll]map[string]bool{}
	for k, e := range last {
		c := coll{k.res, k.ns}
		if k.res == "namespaces" {
			c = coll{k.res, ""}
		}
		if expect[c] == nil {
			expect[c] = map[string]bool{}
		}
		if !e.Deleted && e.Min >= 0 {
			expect[c][k.name] = true
		}
	}
	listed := 0
	for c, names := range expect {
		seen := map[string]int{}
		opts := metav1.ListOptions{Limit: 500}
		for {
			var list *unstructured.UnstructuredList
			err := retryFor(30*time.Second, func() error {
				var err error
				list, err = dyn.Resource(resources[c.res]).Namespace(c.ns).List(ctx, opts)
				return err
			})
			if err != nil {
				fatal("list %s in %q: %v", c.res, c.ns, err)
			}
			for _, it := range list.Items {
				seen[it.GetName()]++
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
		var missing, dup []string
		for name := range names {
			if seen[name] == 0 {
				missing = append(missing, name)
			}
		}
		for name, cnt := range seen {
			if cnt > 1 {
				dup = append(dup, name)
			}
		}
		listed += len(seen)
		check("verify_list", len(missing) == 0 && len(dup) == 0, "%s in %q: %d listed, %d expected, missing %d %v, duplicated %v",
			c.res, c.ns, len(seen), len(names), len(missing), first(missing), first(dup))
	}
	emit(map[string]any{"result": map[string]any{
		"phase": "verify", "objects": len(keys), "listed": listed, "lost": len(lost), "wrong": len(wrong),
		"ms": time.Since(start).Milliseconds(), "ops": lat.summary(),
	}})
}

func first(v []string) []string {
	if len(v) > 5 {
		return v[:5]
	}
	return v
}
