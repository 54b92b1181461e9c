// Package netdelay relays TCP connections with a fixed one-way delay in
// each direction, to measure what distance between hosts costs a cluster
// that runs on one host.
//
// It stands in for netem (tc qdisc … netem delay), which needs a kernel
// built with sch_netem; this package needs nothing but loopback. What it
// cannot hide is its own cost: every chunk is read, held and written by
// the relay, and waking up to write it on time depends on the host. The
// relay keeps how late chunks left (Samples), so that a measurement
// can say what delay it really added.
package netdelay
