// Package helm_test renders the Tessera chart with the Helm SDK (no helm CLI)
// and checks every manifest against the typed Kubernetes API.
package helm_test

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "tessera"
	release   = "demo"
	namespace = "llm"
	full      = "demo-tessera"
)

// kubeVersion is the cluster the chart targets (preStop sleep needs 1.30+).
var kubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

var (
	loadOnce  sync.Once
	loaded    *chart.Chart
	loadErr   error
	strict    = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	converter managedfields.TypeConverter
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	loadOnce.Do(func() {
		loaded, loadErr = loader.Load(chartDir)
		converter = applyconfigurations.NewTypeConverter(scheme.Scheme)
	})
	if loadErr != nil {
		t.Fatalf("load chart: %v", loadErr)
	}
	return loaded
}

func parseValues(t *testing.T, valuesYAML string) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(valuesYAML))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return vals
}

// renderValues is what `helm install` does before templating: coalesce the
// user's values with values.yaml and validate them against values.schema.json.
func renderValues(t *testing.T, valuesYAML string) (chartutil.Values, error) {
	t.Helper()
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	return chartutil.ToRenderValues(loadChart(t), parseValues(t, valuesYAML), opts, caps)
}

// manifests holds one render, decoded.
type manifests struct {
	objects map[string]runtime.Object // "Kind/name"
	monitor *serviceMonitor
	notes   string
}

func render(t *testing.T, valuesYAML string) *manifests {
	t.Helper()
	vals, err := renderValues(t, valuesYAML)
	if err != nil {
		t.Fatalf("values rejected: %v", err)
	}
	files, err := engine.Render(loadChart(t), vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	m := &manifests{objects: map[string]runtime.Object{}}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			m.notes = files[name]
			continue
		case !strings.HasSuffix(name, ".yaml"):
			continue
		}
		for _, doc := range releaseutil.SplitManifests(files[name]) {
			if isBlank(doc) {
				continue
			}
			m.decode(t, name, doc)
		}
	}
	m.checkInvariants(t)
	return m
}

func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// decode strictly: unknown or duplicate fields fail, then the object must
// also convert to its typed OpenAPI schema (types, list-map keys).
func (m *manifests) decode(t *testing.T, file, doc string) {
	t.Helper()
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, doc)
	}
	if meta.Kind == "ServiceMonitor" {
		if m.monitor != nil {
			t.Fatalf("%s: second ServiceMonitor", file)
		}
		m.monitor = new(serviceMonitor)
		if err := yaml.UnmarshalStrict([]byte(doc), m.monitor); err != nil {
			t.Fatalf("%s: ServiceMonitor: %v\n%s", file, err, doc)
		}
		return
	}
	obj, gvk, err := strict.Decode([]byte(doc), nil, nil)
	if err != nil {
		t.Fatalf("%s: strict decode: %v\n%s", file, err, doc)
	}
	if _, err := converter.ObjectToTyped(obj); err != nil {
		t.Fatalf("%s: %s does not match its schema: %v\n%s", file, gvk.Kind, err, doc)
	}
	name := obj.(metav1.Object).GetName()
	if len(name) > 63 {
		t.Errorf("%s: name %q is longer than 63 characters", file, name)
	}
	if ns := obj.(metav1.Object).GetNamespace(); ns != "" {
		t.Errorf("%s: %s sets namespace %q; helm sets it", file, name, ns)
	}
	key := gvk.Kind + "/" + name
	if _, dup := m.objects[key]; dup {
		t.Fatalf("%s: %s rendered twice", file, key)
	}
	m.objects[key] = obj
}

// serviceMonitor is the part of monitoring.coreos.com/v1 the chart uses; the
// CRD's types are not in client-go, so strict YAML decoding stands in.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string         `json:"port"`
			Path          string         `json:"path"`
			Interval      string         `json:"interval"`
			ScrapeTimeout string         `json:"scrapeTimeout"`
			Scheme        string         `json:"scheme,omitempty"`
			TLSConfig     map[string]any `json:"tlsConfig,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func get[T runtime.Object](t *testing.T, m *manifests, kind, name string) T {
	t.Helper()
	obj, ok := m.objects[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s/%s; have %v", kind, name, m.keys())
	}
	return obj.(T)
}

func (m *manifests) has(kind, name string) bool {
	_, ok := m.objects[kind+"/"+name]
	return ok
}

func (m *manifests) keys() []string {
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *manifests) coordinator(t *testing.T) (*appsv1.Deployment, corev1.Container) {
	d := get[*appsv1.Deployment](t, m, "Deployment", full+"-coordinator")
	return d, container(t, d.Spec.Template.Spec, "coordinator")
}

func (m *manifests) worker(t *testing.T) (*appsv1.StatefulSet, corev1.Container) {
	s := get[*appsv1.StatefulSet](t, m, "StatefulSet", full+"-worker")
	return s, container(t, s.Spec.Template.Spec, "worker")
}

func container(t *testing.T, pod corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range pod.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// args returns the container's flags with $(VAR) references expanded the way
// the kubelet does, from env and envFrom ConfigMaps in this render. A
// reference that would not resolve fails the test.
func (m *manifests) args(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		cm := get[*corev1.ConfigMap](t, m, "ConfigMap", from.ConfigMapRef.Name)
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "<" + e.Name + ">" // resolved by the kubelet at run time
		} else {
			env[e.Name] = e.Value
		}
	}
	flags := map[string]string{}
	for i, a := range c.Args {
		for _, ref := range varRef.FindAllStringSubmatch(a, -1) {
			if _, ok := env[ref[1]]; !ok {
				t.Errorf("%s arg %q: $(%s) is not in the container's environment", c.Name, a, ref[1])
			}
		}
		a = varRef.ReplaceAllStringFunc(a, func(s string) string { return env[s[2:len(s)-1]] })
		if i == 0 {
			flags[""] = a // the subcommand
			continue
		}
		k, v, _ := strings.Cut(a, "=")
		if _, dup := flags[k]; dup {
			t.Errorf("%s: flag %s given twice", c.Name, k)
		}
		flags[k] = v
	}
	return flags
}

// checkInvariants holds for every render: mounts name volumes, selectors
// match their pod templates, probes hit named ports.
func (m *manifests) checkInvariants(t *testing.T) {
	t.Helper()
	for key, obj := range m.objects {
		var pod *corev1.PodTemplateSpec
		var sel *metav1.LabelSelector
		switch o := obj.(type) {
		case *appsv1.Deployment:
			pod, sel = &o.Spec.Template, o.Spec.Selector
		case *appsv1.StatefulSet:
			pod, sel = &o.Spec.Template, o.Spec.Selector
			svc := get[*corev1.Service](t, m, "Service", o.Spec.ServiceName)
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: governing Service %s is not headless", key, svc.Name)
			}
			claims := map[string]bool{}
			for _, c := range o.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
			checkPod(t, key, pod.Spec, claims)
		default:
			continue
		}
		if _, ok := obj.(*appsv1.Deployment); ok {
			checkPod(t, key, pod.Spec, nil)
		}
		for k, v := range sel.MatchLabels {
			if pod.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod template", key, k, v)
			}
		}
	}
	for key, obj := range m.objects {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		if n := m.podsMatching(svc.Spec.Selector); n == 0 {
			t.Errorf("%s selects no workload", key)
		}
	}
}

func (m *manifests) podsMatching(sel map[string]string) int {
	n := 0
	for _, obj := range m.objects {
		var labels map[string]string
		switch o := obj.(type) {
		case *appsv1.Deployment:
			labels = o.Spec.Template.Labels
		case *appsv1.StatefulSet:
			labels = o.Spec.Template.Labels
		default:
			continue
		}
		match := true
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if match {
			n++
		}
	}
	return n
}

func checkPod(t *testing.T, key string, pod corev1.PodSpec, claims map[string]bool) {
	t.Helper()
	volumes := map[string]bool{}
	for name := range claims {
		volumes[name] = true
	}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: container %s mounts undefined volume %q", key, c.Name, vm.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				t.Errorf("%s: container %s probes unknown port %q", key, c.Name, p.HTTPGet.Port.StrVal)
			}
		}
	}
}

func etcdMembers(n int) string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://%s-etcd-%d.%s-etcd-peer.%s.svc.cluster.local:2379", full, i, full, namespace)
	}
	return strings.Join(urls, ",")
}

func TestDefaultsAreACUDAClusterWithEmbeddedEtcdAndNATS(t *testing.T) {
	m := render(t, "")

	// Coordinator: replicas, probes, the flags of the contract.
	d, c := m.coordinator(t)
	if *d.Spec.Replicas != 2 {
		t.Errorf("coordinator replicas = %d, want 2", *d.Spec.Replicas)
	}
	checkProbes(t, c, corev1.URISchemeHTTP)
	args := m.args(t, c)
	want := map[string]string{
		"":             "coordinator",
		"--cluster":    full,
		"--etcd":       etcdMembers(3),
		"--nats":       "nats://" + full + "-nats.llm.svc.cluster.local:4222",
		"--model":      "/models/docbloom-3m",
		"--model-name": "docbloom-3m",
		// Workers reject absolute model paths once they have a --model-root.
		"--worker-model-dir": "docbloom-3m",
		"--listen":           ":8080",
		"--grpc-listen":      ":9090",
		"--cache-tokens":     "65536",
		"--block-size":       "16",
	}
	checkFlags(t, "coordinator", args, want, "--plan", "--api-key-file", "--tls-cert", "--etcd-ca", "--nats-ca")
	if c.Image != "ghcr.io/tessera-llm/tessera:0.1.0" {
		t.Errorf("coordinator image %q", c.Image)
	}
	if c.Resources.Limits.Name("nvidia.com/gpu", "").Value() != 0 {
		t.Error("the coordinator asks for a GPU")
	}
	svc := get[*corev1.Service](t, m, "Service", full)
	if got := servicePorts(svc); got != "http:8080,grpc:9090" {
		t.Errorf("coordinator Service ports %s", got)
	}

	// Workers: a StatefulSet of CUDA pods with one GPU each.
	s, w := m.worker(t)
	if *s.Spec.Replicas != 2 || s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("worker replicas %d, policy %s", *s.Spec.Replicas, s.Spec.PodManagementPolicy)
	}
	checkProbes(t, w, corev1.URISchemeHTTP)
	if gpus := w.Resources.Limits.Name("nvidia.com/gpu", ""); gpus.Value() != 1 {
		t.Errorf("worker nvidia.com/gpu limit = %v, want 1", gpus)
	}
	if w.Resources.Limits.Memory().String() != "64Gi" {
		t.Errorf("worker memory limit %v; the user's limits were lost when adding the GPU", w.Resources.Limits.Memory())
	}
	if w.Image != "ghcr.io/tessera-llm/tessera:0.1.0-cuda" {
		t.Errorf("worker image %q", w.Image)
	}
	// The CUDA image's /tessera hands --device cuda:0 to its companion.
	if !slices.Contains(w.Env, corev1.EnvVar{Name: "TESSERA_CUDA_BIN", Value: "/tessera-cuda"}) {
		t.Errorf("GPU workers do not name the CUDA companion: env %v", w.Env)
	}
	if !slices.ContainsFunc(s.Spec.Template.Spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "nvidia.com/gpu" }) {
		t.Error("GPU workers do not tolerate the nvidia.com/gpu taint")
	}
	wargs := m.args(t, w)
	checkFlags(t, "worker", wargs, map[string]string{
		"":              "worker",
		"--cluster":     full,
		"--etcd":        etcdMembers(3),
		"--nats":        "nats://" + full + "-nats.llm.svc.cluster.local:4222",
		"--device":      "cuda:0",
		"--memory":      "80GiB",
		"--listen":      ":7070",
		"--advertise":   "<POD_IP>:7070",
		"--http-listen": ":8081",
		"--id":          "<POD_NAME>",
		"--lease-ttl":   "5s",
		"--model-root":  "/models",
	})
	hs := get[*corev1.Service](t, m, "Service", full+"-worker")
	if hs.Spec.ClusterIP != corev1.ClusterIPNone || !hs.Spec.PublishNotReadyAddresses {
		t.Error("worker Service is not headless with not-ready addresses published")
	}

	// Model from the default PVC, mounted read-only at the model root.
	checkModelVolume(t, d.Spec.Template.Spec, func(v corev1.Volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "tessera-models"
	})

	// etcd: 3 members that know each other, peer and client Services.
	e := get[*appsv1.StatefulSet](t, m, "StatefulSet", full+"-etcd")
	if *e.Spec.Replicas != 3 {
		t.Errorf("etcd replicas = %d, want 3", *e.Spec.Replicas)
	}
	eargs := m.args(t, container(t, e.Spec.Template.Spec, "etcd"))
	if n := strings.Count(eargs["--initial-cluster"], "="); n != 3 {
		t.Errorf("etcd --initial-cluster has %d members: %s", n, eargs["--initial-cluster"])
	}
	if !strings.HasPrefix(eargs["--advertise-client-urls"], "http://<POD_NAME>."+full+"-etcd-peer.llm.svc.cluster.local:2379") {
		t.Errorf("etcd advertises %s", eargs["--advertise-client-urls"])
	}
	peer := get[*corev1.Service](t, m, "Service", full+"-etcd-peer")
	if !peer.Spec.PublishNotReadyAddresses || servicePorts(peer) != "client:2379,peer:2380" {
		t.Errorf("etcd peer Service: %+v", peer.Spec)
	}
	get[*corev1.Service](t, m, "Service", full+"-etcd")
	if len(e.Spec.VolumeClaimTemplates) != 1 {
		t.Error("etcd has no persistent data volume")
	}

	// NATS: a 3-node cluster whose routes name every member.
	n := get[*appsv1.StatefulSet](t, m, "StatefulSet", full+"-nats")
	if *n.Spec.Replicas != 3 {
		t.Errorf("nats replicas = %d", *n.Spec.Replicas)
	}
	conf := get[*corev1.ConfigMap](t, m, "ConfigMap", full+"-nats").Data["nats.conf"]
	for i := range 3 {
		route := fmt.Sprintf("nats://%s-nats-%d.%s-nats-headless.llm.svc.cluster.local:6222", full, i, full)
		if !strings.Contains(conf, route) {
			t.Errorf("nats.conf lacks route %s:\n%s", route, conf)
		}
	}
	get[*corev1.Service](t, m, "Service", full+"-nats")

	// Budgets for everything but the coordinator (only its leader is Ready).
	for _, name := range []string{"worker", "etcd", "nats"} {
		pdb := get[*policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget", full+"-"+name)
		if pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("%s PDB maxUnavailable %v", name, pdb.Spec.MaxUnavailable)
		}
	}
	if m.has("PodDisruptionBudget", full+"-coordinator") {
		t.Error("coordinator PDB rendered by default")
	}
	for _, kind := range []string{"Secret", "HorizontalPodAutoscaler", "NetworkPolicy"} {
		for _, k := range m.keys() {
			if strings.HasPrefix(k, kind+"/") {
				t.Errorf("%s rendered by default", k)
			}
		}
	}
	if m.monitor != nil {
		t.Error("ServiceMonitor rendered by default")
	}
	if !strings.Contains(m.notes, "port-forward svc/"+full+" 8080:8080") {
		t.Errorf("NOTES.txt does not say how to reach the API:\n%s", m.notes)
	}
}

func TestCPUWorkersAskForNoGPU(t *testing.T) {
	m := render(t, `
worker:
  device: cpu
  memory: 16GiB
  quantize: q8
  replicas: 3
  tolerations: []
  nodeSelector: {node-pool: cpu}
plan: pp=3,tp=1
`)
	s, w := m.worker(t)
	for _, c := range slices.Concat(s.Spec.Template.Spec.InitContainers, s.Spec.Template.Spec.Containers) {
		for name := range c.Resources.Limits {
			if strings.Contains(string(name), "gpu") {
				t.Errorf("cpu worker container %s has limit %s", c.Name, name)
			}
		}
		for name := range c.Resources.Requests {
			if strings.Contains(string(name), "gpu") {
				t.Errorf("cpu worker container %s has request %s", c.Name, name)
			}
		}
	}
	if w.Image != "ghcr.io/tessera-llm/tessera:0.1.0" {
		t.Errorf("cpu worker image %q", w.Image)
	}
	if slices.ContainsFunc(w.Env, func(e corev1.EnvVar) bool { return e.Name == "TESSERA_CUDA_BIN" }) {
		t.Error("cpu workers name a CUDA companion")
	}
	if s.Spec.Template.Spec.NodeSelector["node-pool"] != "cpu" || len(s.Spec.Template.Spec.Tolerations) != 0 {
		t.Errorf("placement values not applied: %v %v", s.Spec.Template.Spec.NodeSelector, s.Spec.Template.Spec.Tolerations)
	}
	args := m.args(t, w)
	checkFlags(t, "worker", args, map[string]string{"--device": "cpu", "--memory": "16GiB", "--quantize": "q8"})
	if *s.Spec.Replicas != 3 {
		t.Errorf("worker replicas %d", *s.Spec.Replicas)
	}
	_, c := m.coordinator(t)
	checkFlags(t, "coordinator", m.args(t, c), map[string]string{"--plan": "pp=3,tp=1"})
}

func TestExternalEtcdAndNATS(t *testing.T) {
	m := render(t, `
cluster: prod-a
etcd:
  enabled: false
  endpoints: ["https://etcd-0.infra:2379", "https://etcd-1.infra:2379"]
nats:
  enabled: false
  url: tls://nats.infra:4222
  auth: {enabled: true, user: tessera, existingSecret: nats-creds}
tls:
  etcd: {enabled: true, existingSecret: etcd-client}
  nats: {enabled: true, existingSecret: nats-client}
`)
	for _, k := range m.keys() {
		if strings.Contains(k, "-etcd") || strings.Contains(k, "-nats") {
			t.Errorf("%s rendered with external etcd/NATS", k)
		}
	}
	wantClient := map[string]string{
		"--cluster":       "prod-a",
		"--etcd":          "https://etcd-0.infra:2379,https://etcd-1.infra:2379",
		"--nats":          "tls://nats.infra:4222",
		"--etcd-ca":       "/etc/tessera/tls/etcd/ca.crt",
		"--etcd-cert":     "/etc/tessera/tls/etcd/tls.crt",
		"--etcd-key":      "/etc/tessera/tls/etcd/tls.key",
		"--nats-ca":       "/etc/tessera/tls/nats/ca.crt",
		"--nats-cert":     "/etc/tessera/tls/nats/tls.crt",
		"--nats-key":      "/etc/tessera/tls/nats/tls.key",
		"--nats-user":     "tessera",
		"--nats-password": "<NATS_PASSWORD>",
	}
	d, c := m.coordinator(t)
	s, w := m.worker(t)
	checkFlags(t, "coordinator", m.args(t, c), wantClient)
	checkFlags(t, "worker", m.args(t, w), wantClient)
	for _, pod := range []corev1.PodSpec{d.Spec.Template.Spec, s.Spec.Template.Spec} {
		secrets := map[string]string{}
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				secrets[v.Name] = v.Secret.SecretName
			}
		}
		if secrets["tls-etcd"] != "etcd-client" || secrets["tls-nats"] != "nats-client" {
			t.Errorf("TLS volumes %v", secrets)
		}
	}
	for _, e := range w.Env {
		if e.Name == "NATS_PASSWORD" && (e.ValueFrom.SecretKeyRef.Name != "nats-creds" || e.ValueFrom.SecretKeyRef.Key != "password") {
			t.Errorf("NATS password from %+v", e.ValueFrom.SecretKeyRef)
		}
	}
	if m.has("Secret", full+"-secrets") {
		t.Error("chart Secret rendered though every secret is external")
	}
}

func TestTLSEverywhere(t *testing.T) {
	m := render(t, `
apiKey: {keys: [k-one, k-two]}
tls:
  api: {enabled: true, cert: API-CERT, key: API-KEY}
  etcd: {enabled: true, ca: CA, cert: ETCD-CERT, key: ETCD-KEY}
  nats: {enabled: true, ca: CA, cert: NATS-CERT, key: NATS-KEY}
nats:
  auth: {enabled: true, password: s3cret}
serviceMonitor: {enabled: true}
`)
	sec := get[*corev1.Secret](t, m, "Secret", full+"-secrets")
	want := map[string]string{
		"api-keys": "k-one\nk-two\n", "api-tls.crt": "API-CERT", "api-tls.key": "API-KEY",
		"etcd-ca.crt": "CA", "etcd-tls.crt": "ETCD-CERT", "etcd-tls.key": "ETCD-KEY",
		"nats-ca.crt": "CA", "nats-tls.crt": "NATS-CERT", "nats-tls.key": "NATS-KEY",
		"nats-password": "s3cret",
	}
	for k, v := range want {
		if string(sec.Data[k]) != v {
			t.Errorf("Secret %s = %q, want %q", k, sec.Data[k], v)
		}
	}
	d, c := m.coordinator(t)
	checkProbes(t, c, corev1.URISchemeHTTPS)
	checkFlags(t, "coordinator", m.args(t, c), map[string]string{
		"--tls-cert":     "/etc/tessera/tls/api/tls.crt",
		"--tls-key":      "/etc/tessera/tls/api/tls.key",
		"--api-key-file": "/etc/tessera/api-keys/keys",
		"--etcd":         strings.ReplaceAll(etcdMembers(3), "http://", "https://"),
		"--nats":         "tls://" + full + "-nats.llm.svc.cluster.local:4222",
	})
	items := map[string][]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			for _, it := range v.Secret.Items {
				items[v.Name] = append(items[v.Name], it.Key+">"+it.Path)
			}
		}
	}
	if got := strings.Join(items["tls-api"], ","); got != "api-tls.crt>tls.crt,api-tls.key>tls.key" {
		t.Errorf("tls-api items %s", got)
	}
	if got := strings.Join(items["tls-etcd"], ","); got != "etcd-ca.crt>ca.crt,etcd-tls.crt>tls.crt,etcd-tls.key>tls.key" {
		t.Errorf("tls-etcd items %s", got)
	}
	if got := strings.Join(items["api-keys"], ","); got != "api-keys>keys" {
		t.Errorf("api-keys items %s", got)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440) {
			t.Errorf("secret volume %s is not mode 0440", v.Name)
		}
	}

	// The chart's etcd and NATS serve with the same material.
	e := get[*appsv1.StatefulSet](t, m, "StatefulSet", full+"-etcd")
	eargs := m.args(t, container(t, e.Spec.Template.Spec, "etcd"))
	for _, f := range []string{"--client-cert-auth", "--cert-file", "--peer-cert-file", "--trusted-ca-file"} {
		if _, ok := eargs[f]; !ok {
			t.Errorf("etcd lacks %s", f)
		}
	}
	if !strings.HasPrefix(eargs["--listen-client-urls"], "https://") || !strings.Contains(eargs["--initial-cluster"], "=https://") {
		t.Errorf("etcd does not serve TLS: %v", eargs)
	}
	conf := get[*corev1.ConfigMap](t, m, "ConfigMap", full+"-nats").Data["nats.conf"]
	for _, s := range []string{"cert_file: /etc/nats/tls/tls.crt", "verify: true", "password: $NATS_PASSWORD"} {
		if !strings.Contains(conf, s) {
			t.Errorf("nats.conf lacks %q", s)
		}
	}
	if m.monitor.Spec.Endpoints[0].Scheme != "https" || m.monitor.Spec.Endpoints[1].Scheme != "" {
		t.Errorf("ServiceMonitor schemes: %+v", m.monitor.Spec.Endpoints)
	}
	if !strings.Contains(m.notes, "https://127.0.0.1:8080") || !strings.Contains(m.notes, "Authorization: Bearer") {
		t.Errorf("NOTES.txt ignores TLS/API keys:\n%s", m.notes)
	}
}

func TestMonitoringNetworkPolicyAndAutoscaling(t *testing.T) {
	m := render(t, `
serviceMonitor: {enabled: true, labels: {release: prom}}
networkPolicy:
  enabled: true
  metricsIngressFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
hpa: {enabled: true, minReplicas: 2, maxReplicas: 6, targetQueueDepthPerWorker: 4}
`)
	sm := m.monitor
	if sm == nil || sm.Labels["release"] != "prom" || sm.Spec.Selector.MatchLabels["tessera.io/metrics"] != "true" {
		t.Fatalf("ServiceMonitor: %+v", sm)
	}
	// Its endpoints name ports on the Services it selects.
	ports := map[string]bool{}
	for _, name := range []string{full, full + "-worker"} {
		svc := get[*corev1.Service](t, m, "Service", name)
		if svc.Labels["tessera.io/metrics"] != "true" {
			t.Errorf("Service %s is not selected for metrics", name)
		}
		for _, p := range svc.Spec.Ports {
			ports[p.Name] = true
		}
	}
	for _, ep := range sm.Spec.Endpoints {
		if !ports[ep.Port] || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %+v matches no Service port", ep)
		}
	}

	for _, name := range []string{"coordinator", "worker", "etcd", "nats"} {
		np := get[*networkingv1.NetworkPolicy](t, m, "NetworkPolicy", full+"-"+name)
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != name || len(np.Spec.Ingress) != 2 {
			t.Errorf("%s NetworkPolicy: %+v", name, np.Spec)
		}
		if peer := np.Spec.Ingress[0].From[0].PodSelector; peer.MatchLabels["app.kubernetes.io/instance"] != release {
			t.Errorf("%s NetworkPolicy does not admit the release's pods: %+v", name, peer)
		}
	}
	api := get[*networkingv1.NetworkPolicy](t, m, "NetworkPolicy", full+"-coordinator").Spec.Ingress[1]
	if api.Ports[0].Port.IntValue() != 8080 || len(api.From) != 0 {
		t.Errorf("API ingress rule %+v; want port 8080 from anywhere", api)
	}
	wm := get[*networkingv1.NetworkPolicy](t, m, "NetworkPolicy", full+"-worker").Spec.Ingress[1]
	if wm.Ports[0].Port.IntValue() != 8081 || wm.From[0].NamespaceSelector == nil {
		t.Errorf("worker metrics ingress %+v", wm)
	}

	hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, m, "HorizontalPodAutoscaler", full+"-worker")
	if hpa.Spec.ScaleTargetRef.Kind != "StatefulSet" || hpa.Spec.ScaleTargetRef.Name != full+"-worker" ||
		*hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 6 {
		t.Errorf("HPA target %+v", hpa.Spec)
	}
	metric := hpa.Spec.Metrics[0]
	if metric.Type != autoscalingv2.ObjectMetricSourceType || metric.Object.Metric.Name != "tessera_scheduler_queue_depth" ||
		metric.Object.DescribedObject.Name != full || metric.Object.Target.AverageValue.String() != "4" {
		t.Errorf("HPA metric %+v", metric.Object)
	}
	if s, _ := m.worker(t); s.Spec.Replicas != nil {
		t.Error("worker StatefulSet sets replicas while the HPA owns them")
	}
}

func TestModelSources(t *testing.T) {
	cases := []struct {
		name, values string
		volume       func(corev1.Volume) bool
	}{
		{"pvc", `model: {source: pvc, pvc: {claimName: llama-weights}}`, func(v corev1.Volume) bool {
			return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "llama-weights" && v.PersistentVolumeClaim.ReadOnly
		}},
		{"hostPath", `model: {source: hostPath, hostPath: {path: /mnt/nvme/models}}`, func(v corev1.Volume) bool {
			return v.HostPath != nil && v.HostPath.Path == "/mnt/nvme/models"
		}},
		{"init", `
model:
  source: init
  path: llama-3-8b
  init:
    image: rclone/rclone:1.70
    command: [rclone, copy, "s3:models/llama-3-8b", /models/llama-3-8b]
    envFrom: [{secretRef: {name: s3-creds}}]
`, func(v corev1.Volume) bool {
			return v.EmptyDir != nil && v.EmptyDir.SizeLimit.String() == "64Gi"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.values)
			d, c := m.coordinator(t)
			s, w := m.worker(t)
			checkModelVolume(t, d.Spec.Template.Spec, tc.volume)
			checkModelVolume(t, s.Spec.Template.Spec, tc.volume)
			for _, pod := range []corev1.PodSpec{d.Spec.Template.Spec, s.Spec.Template.Spec} {
				if tc.name != "init" {
					if len(pod.InitContainers) != 0 {
						t.Errorf("init containers with source %s", tc.name)
					}
					continue
				}
				if len(pod.InitContainers) != 1 {
					t.Fatalf("want one init container, have %d", len(pod.InitContainers))
				}
				ic := pod.InitContainers[0]
				if ic.Image != "rclone/rclone:1.70" || ic.Command[0] != "rclone" || ic.EnvFrom[0].SecretRef.Name != "s3-creds" ||
					ic.VolumeMounts[0].MountPath != "/models" || ic.VolumeMounts[0].ReadOnly {
					t.Errorf("init container %+v", ic)
				}
			}
			if tc.name == "init" {
				checkFlags(t, "coordinator", m.args(t, c), map[string]string{"--model": "/models/llama-3-8b", "--worker-model-dir": "llama-3-8b"})
			}
			checkFlags(t, "worker", m.args(t, w), map[string]string{"--model-root": "/models"})
		})
	}
	t.Run("image", func(t *testing.T) {
		m := render(t, `model: {source: image}`)
		d, _ := m.coordinator(t)
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "model" {
				t.Errorf("model volume with source image: %+v", v)
			}
		}
	})
}

func TestSchemaRejectsBadValues(t *testing.T) {
	bad := map[string]string{
		"unknown device":           `worker: {device: tpu}`,
		"zero coordinators":        `coordinator: {replicas: 0}`,
		"negative workers":         `worker: {replicas: -1}`,
		"fractional replicas":      `coordinator: {replicas: 1.5}`,
		"string replicas":          `worker: {replicas: "3"}`,
		"zero GPUs":                `worker: {gpusPerWorker: 0}`,
		"memory without unit":      `worker: {memory: "80"}`,
		"unknown quantization":     `worker: {quantize: q4}`,
		"even etcd":                `etcd: {replicas: 2}`,
		"bad plan":                 `plan: pp=0,tp=2`,
		"unknown model source":     `model: {source: s3}`,
		"relative model root":      `model: {root: models}`,
		"absolute model path":      `model: {path: /models/llama}`,
		"misspelt key":             `workers: {replicas: 3}`,
		"misspelt nested key":      `worker: {gpus: 2}`,
		"external etcd, no URLs":   `etcd: {enabled: false}`,
		"external nats, no URL":    `nats: {enabled: false}`,
		"nats URL scheme":          `nats: {enabled: false, url: "http://nats:4222"}`,
		"tls flag not boolean":     `tls: {api: {enabled: "yes"}}`,
		"service type":             `coordinator: {service: {type: Ingress}}`,
		"port out of range":        `worker: {grpcPort: 70000}`,
		"hpa stabilization > 1h":   `hpa: {scaleDownStabilizationSeconds: 7200}`,
		"lease TTL without a unit": `worker: {leaseTTL: "5"}`,
	}
	for name, values := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := renderValues(t, values)
			if err == nil {
				t.Fatalf("values.schema.json accepted %s", values)
			}
			if !strings.Contains(err.Error(), "schema") {
				t.Errorf("rejected for another reason: %v", err)
			}
		})
	}
	// The same check on its own, as `helm lint` and `helm install` run it.
	vals, err := chartutil.CoalesceValues(loadChart(t), parseValues(t, `worker: {device: tpu}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ValidateAgainstSchema(loadChart(t), vals); err == nil || !strings.Contains(err.Error(), "device") {
		t.Errorf("ValidateAgainstSchema(worker.device=tpu) = %v", err)
	}
	for _, good := range []string{`plan: "tp=2,pp=4"`, `plan: pp=2`, `worker: {memory: 7.5GiB, leaseTTL: 1m30s}`, `etcd: {replicas: 5}`} {
		if _, err := renderValues(t, good); err != nil {
			t.Errorf("rejected good values %s: %v", good, err)
		}
	}
}

// TestLint is `helm lint` through the SDK, for the defaults and an
// everything-on value set: any warning or error fails.
func TestLint(t *testing.T) {
	for _, values := range []string{"", `
worker: {device: cpu}
etcd: {enabled: false, endpoints: ["http://etcd:2379"]}
nats: {enabled: false, url: "nats://nats:4222"}
tls: {api: {enabled: true, existingSecret: api-tls}}
apiKey: {existingSecret: api-keys}
serviceMonitor: {enabled: true}
networkPolicy: {enabled: true}
hpa: {enabled: true}
coordinator: {pdb: {enabled: true}}
`} {
		kv := kubeVersion
		linter := lint.AllWithKubeVersion(chartDir, parseValues(t, values), namespace, &kv)
		for _, msg := range linter.Messages {
			if msg.Severity >= support.WarningSev {
				t.Errorf("lint: %s", msg)
			} else {
				t.Logf("lint: %s", msg)
			}
		}
	}
}

func checkProbes(t *testing.T, c corev1.Container, scheme corev1.URIScheme) {
	t.Helper()
	r, l := c.ReadinessProbe, c.LivenessProbe
	if r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/ready" || r.HTTPGet.Port.StrVal != "http" {
		t.Errorf("%s readiness probe %+v, want GET /ready on http", c.Name, r)
	}
	if l == nil || l.HTTPGet == nil || l.HTTPGet.Path != "/health" || l.HTTPGet.Port.StrVal != "http" {
		t.Errorf("%s liveness probe %+v, want GET /health on http", c.Name, l)
	}
	if r != nil && r.HTTPGet != nil && r.HTTPGet.Scheme != scheme && !(scheme == corev1.URISchemeHTTP && r.HTTPGet.Scheme == "") {
		t.Errorf("%s probes use %s, want %s", c.Name, r.HTTPGet.Scheme, scheme)
	}
}

func checkFlags(t *testing.T, who string, got, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s %s = %q (set: %v), want %q", who, k, g, ok, v)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("%s has %s=%s by default", who, k, got[k])
		}
	}
}

func checkModelVolume(t *testing.T, pod corev1.PodSpec, ok func(corev1.Volume) bool) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == "model" {
			if !ok(v) {
				t.Errorf("model volume %+v", v.VolumeSource)
			}
			return
		}
	}
	t.Error("no model volume")
}

func servicePorts(svc *corev1.Service) string {
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
	}
	return strings.Join(ports, ",")
}
