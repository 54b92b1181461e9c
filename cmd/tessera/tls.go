package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/tessera-llm/tessera/shard/registry"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// securityFlags hold the TLS material and credentials of the three
// connections a cluster process makes: etcd, NATS, and gRPC between the
// coordinator and the workers (mutual TLS: each side proves itself with a
// certificate from the cluster's CA).
type securityFlags struct {
	etcdCA, etcdCert, etcdKey, etcdUser, etcdPassword string
	natsCA, natsCert, natsKey, natsUser, natsPassword string
	grpcCA, grpcCert, grpcKey                         string
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.etcdCA, "etcd-ca", "", "CA file to verify etcd's certificate (turns on TLS to etcd)")
	fs.StringVar(&s.etcdCert, "etcd-cert", "", "client certificate for etcd")
	fs.StringVar(&s.etcdKey, "etcd-key", "", "client key for etcd")
	fs.StringVar(&s.etcdUser, "etcd-user", "", "etcd user (etcd auth)")
	fs.StringVar(&s.etcdPassword, "etcd-password", os.Getenv("TESSERA_ETCD_PASSWORD"), "etcd password (default $TESSERA_ETCD_PASSWORD)")
	fs.StringVar(&s.natsCA, "nats-ca", "", "CA file to verify the NATS server (turns on TLS to NATS)")
	fs.StringVar(&s.natsCert, "nats-cert", "", "client certificate for NATS")
	fs.StringVar(&s.natsKey, "nats-key", "", "client key for NATS")
	fs.StringVar(&s.natsUser, "nats-user", "", "NATS user")
	fs.StringVar(&s.natsPassword, "nats-password", os.Getenv("TESSERA_NATS_PASSWORD"), "NATS password (default $TESSERA_NATS_PASSWORD)")
	fs.StringVar(&s.grpcCA, "grpc-ca", "", "CA of the cluster's gRPC certificates (turns on mutual TLS between coordinator and workers)")
	fs.StringVar(&s.grpcCert, "grpc-cert", "", "this process's gRPC certificate (from --grpc-ca)")
	fs.StringVar(&s.grpcKey, "grpc-key", "", "this process's gRPC key")
}

// clientTLS builds a client TLS config from a CA and an optional key pair;
// nil when no CA is given.
func clientTLS(what, ca, cert, key string) (*tls.Config, error) {
	if ca == "" {
		if cert != "" || key != "" {
			return nil, fmt.Errorf("%w: --%s-cert/--%s-key need --%s-ca", errUsage, what, what, what)
		}
		return nil, nil
	}
	pool, err := loadCA(what, ca)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" || key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s client certificate: %w", what, err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

func loadCA(what, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s CA: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s CA %s holds no PEM certificate", what, path)
	}
	return pool, nil
}

func (s *securityFlags) etcdOptions() ([]registry.DialOption, error) {
	tc, err := clientTLS("etcd", s.etcdCA, s.etcdCert, s.etcdKey)
	if err != nil {
		return nil, err
	}
	return []registry.DialOption{func(c *clientv3.Config) {
		c.TLS = tc
		c.Username, c.Password = s.etcdUser, s.etcdPassword
	}}, nil
}

func (s *securityFlags) natsOptions() ([]nats.Option, error) {
	tc, err := clientTLS("nats", s.natsCA, s.natsCert, s.natsKey)
	if err != nil {
		return nil, err
	}
	var opts []nats.Option
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	if s.natsUser != "" {
		opts = append(opts, nats.UserInfo(s.natsUser, s.natsPassword))
	}
	return opts, nil
}

// grpcMutual is the mutual-TLS config both gRPC ends use, nil when off.
func (s *securityFlags) grpcMutual() (*tls.Config, error) {
	if s.grpcCA == "" {
		if s.grpcCert != "" || s.grpcKey != "" {
			return nil, fmt.Errorf("%w: --grpc-cert/--grpc-key need --grpc-ca", errUsage)
		}
		return nil, nil
	}
	if s.grpcCert == "" || s.grpcKey == "" {
		return nil, fmt.Errorf("%w: mutual TLS (--grpc-ca) needs --grpc-cert and --grpc-key", errUsage)
	}
	pool, err := loadCA("grpc", s.grpcCA)
	if err != nil {
		return nil, err
	}
	kp, err := tls.LoadX509KeyPair(s.grpcCert, s.grpcKey)
	if err != nil {
		return nil, fmt.Errorf("grpc certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}
