package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/shard/transport/testpki"
)

// pki writes a CA and leaf key pairs for 127.0.0.1 into a directory, as
// PEM files for the commands' flags.
type pki struct {
	*testpki.CA
	dir  string
	file string // the CA's PEM file
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{CA: testpki.NewCA(t, name), dir: t.TempDir()}
	p.file = p.write(t, name+"-ca.crt", "CERTIFICATE", p.DER)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// leaf issues a certificate for 127.0.0.1 usable by servers and clients.
func (p *pki) leaf(t *testing.T, name string) (cert, key string) {
	t.Helper()
	l := p.Leaf(t, name)
	kd, err := x509.MarshalECPrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".crt", "CERTIFICATE", l.DER), p.write(t, name+".key", "EC PRIVATE KEY", kd)
}

// A NATS server with a password refuses a worker that has none.
func TestNATSRequiresCredentials(t *testing.T) {
	in := startInfra(t)
	ns, url, err := transport.EmbeddedNATS(&server.Options{Username: "tessera", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	code, _, stderr := runCLI(t, "worker", "--etcd", in.etcd, "--nats", url, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(strings.ToLower(stderr), "authorization") {
		t.Fatalf("worker without NATS credentials: exit %d, stderr %q", code, stderr)
	}
	w := spawn(t, "authorized", "worker", "--cluster", "e2e-natsauth", "--etcd", in.etcd, "--nats", url,
		"--nats-user", "tessera", "--nats-password", "s3cret", "--listen", "127.0.0.1:0", "--id", "authorized")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.out.String(), "worker up") {
		if time.Now().After(deadline) {
			t.Fatalf("worker with credentials did not come up:\n%s", w.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With mutual TLS, a worker whose certificate is not from the cluster's
// CA cannot join; one with a valid certificate serves. The API serves
// HTTPS with --tls-cert.
func TestMutualTLS(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-mtls"
	good, rogue := newPKI(t, "cluster"), newPKI(t, "rogue")
	ccert, ckey := good.leaf(t, "coordinator")
	wcert, wkey := good.leaf(t, "worker")
	rcert, rkey := rogue.leaf(t, "rogue")
	addr := freeAddr(t)
	spawn(t, cluster+"/c1", "coordinator", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats,
		"--model", filepath.Join(repoRoot, "testdata/golden/bloom"), "--listen", addr, "--grpc-listen", "", "--id", "c1",
		"--grpc-ca", good.file, "--grpc-cert", ccert, "--grpc-key", ckey, "--tls-cert", ccert, "--tls-key", ckey)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: good.Pool()}}}
	api := "https://" + addr
	waitHTTPS := func(path string, want int, within time.Duration) bool {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if resp, err := client.Get(api + path); err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return true
				}
			}
		}
		return false
	}
	if !waitHTTPS("/health", 200, 20*time.Second) {
		t.Fatal("the API did not answer over HTTPS")
	}
	r := spawn(t, cluster+"/rogue", "worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats, "--id", "a-rogue",
		"--listen", "127.0.0.1:0", "--grpc-ca", rogue.file, "--grpc-cert", rcert, "--grpc-key", rkey)
	if waitHTTPS("/ready", 200, 3*time.Second) {
		t.Fatal("a worker with a certificate from another CA joined the plan")
	}
	r.stop(syscall.SIGTERM)
	spawn(t, cluster+"/w", "worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats, "--id", "good",
		"--listen", "127.0.0.1:0", "--grpc-ca", good.file, "--grpc-cert", wcert, "--grpc-key", wkey)
	if !waitHTTPS("/ready", 200, 30*time.Second) {
		t.Fatal("the cluster did not serve with a valid worker certificate")
	}
}

// With mutual TLS, tensor-parallel ranks reduce over the direct mesh with
// the cluster's certificates, and generate the golden ids.
func TestMutualTLSTensorParallel(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-mtls-tp"
	ca := newPKI(t, "cluster")
	ccert, ckey := ca.leaf(t, "coordinator")
	wcert, wkey := ca.leaf(t, "worker")
	dir := filepath.Join(repoRoot, "testdata/golden/llama")
	_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", "pp=1,tp=2",
		"--grpc-ca", ca.file, "--grpc-cert", ccert, "--grpc-key", ckey)
	workers := startWorkers(t, in, cluster, 2, 0, "--grpc-ca", ca.file, "--grpc-cert", wcert, "--grpc-key", wkey)
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	checkReducePath(t, workers, "direct")
	checkGolden(t, api, dir)
}
