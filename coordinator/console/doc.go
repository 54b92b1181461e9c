// Package console is the operator console the coordinator serves at
// /console/ on its API listener: a page embedded in the binary (no other
// service, no network beyond the coordinator) with
//
//   - the cluster map: workers (address, device, memory, health, lease),
//     the current plan as a grid of stages × ranks, and the plan versions
//     with what caused each;
//   - live plots of the last 15 minutes: tokens/s, requests/s, TTFT and
//     inter-token latency p50/p99, queue, KV blocks, prefix-cache hit
//     rate, step time and each stage's busy time;
//   - a playground: completions with each token shaded by its probability
//     and its alternatives on hover, self-consistency's chains and vote,
//     and chat through the model's template.
//
// Run samples the coordinator's Prometheus registry into an in-memory ring
// every second and follows the cluster in etcd (workers, leases, plans,
// the leader) and the workers' Health and Stats RPCs, so a standby shows
// the same map and says it is standby. /console/api/events streams the
// state and the samples as Server-Sent Events to every open tab from one
// broadcast. The data endpoints sit behind the API key; the page asks for
// it once and sends it as a bearer token.
//
// The plots use uPlot (MIT), vendored as its built file with its license
// under assets/vendor; vendor.sh fetches the pinned version again. The
// page itself is plain ES modules: building needs neither Node nor a
// network.
package console
