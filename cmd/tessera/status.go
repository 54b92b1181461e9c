package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tessera-llm/tessera/coordinator"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
)

func init() {
	register(command{name: "status", summary: "Print a cluster's workers, plan and health from etcd.", run: runStatus})
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	var cf clusterFlags
	var asJSON bool
	fs := newFlagSet("status", "status --etcd URL [--cluster NAME] [--json]", stderr)
	cf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	etcdOpts, err := cf.sec.etcdOptions()
	if err != nil {
		return err
	}
	workerTLS, err := cf.sec.grpcMutual()
	if err != nil {
		return err
	}
	cli, err := registry.Dial(ctx, cf.etcd, etcdOpts...)
	if err != nil {
		return err
	}
	defer cli.Close()
	st, err := coordinator.ReadStatus(ctx, cli, cf.cluster, workerTLS)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "cluster %s, leader %q\n\n", st.Cluster, st.Leader)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "worker\taddress\tbackend\tdevice\tmemory\thealth")
	for _, w := range st.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f GiB\t%s\n", w.Id, w.Address, w.Backend, w.Device, float64(w.MemoryBytes)/(1<<30), st.Health[w.Id])
	}
	tw.Flush()
	for _, l := range st.Planning.GetLeftOut() {
		fmt.Fprintf(stdout, "left out: %s: %s\n", l.WorkerId, l.Reason)
	}
	if e := st.Planning.GetError(); e != "" {
		fmt.Fprintf(stdout, "last re-plan failed: %s\n", e)
	}
	if st.PlanErr != nil {
		fmt.Fprintf(stdout, "\nno plan yet (%v)\n", st.PlanErr)
		return nil
	}
	p, err := plan.Parse(st.Plan)
	if err != nil {
		return fmt.Errorf("plan v%d in etcd: %w", st.PlanVersion, err)
	}
	fmt.Fprintf(stdout, "\n%s", p)
	for _, stage := range p.Stages {
		for _, r := range stage.Ranks {
			if len(r.ALiBiSlopes) > 0 {
				fmt.Fprintf(stdout, "stage %d rank %d ALiBi slopes %v\n", stage.Index, r.Index, r.ALiBiSlopes)
			}
		}
	}
	return nil
}
