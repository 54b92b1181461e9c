// Package testpki issues throwaway certificates for tests of the cluster's
// mutual TLS: a CA per test and leaf certificates for 127.0.0.1 that serve
// as both server and client, as a worker's and a coordinator's do.
package testpki
