package registry_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/tessera-llm/tessera/shard/registry"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// A worker registers, a coordinator is elected, watches the workers and
// publishes a plan, all against an embedded etcd.
func Example() {
	dir, _ := os.MkdirTemp("", "tessera-example-")
	defer os.RemoveAll(dir)
	_, endpoint, stop, err := registry.Embedded(dir, registry.EmbedNoFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := registry.Dial(ctx, endpoint)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()

	// Worker side.
	reg, err := registry.Register(ctx, cli, "demo", &tesserav1.WorkerInfo{
		Id: "w1", Address: "127.0.0.1:7001", Backend: "cpu", MemoryBytes: 8 << 30,
	}, 5*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()

	// Coordinator side.
	lead, err := registry.Campaign(ctx, cli, "demo", "coord-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lead.Resign(context.Background())
	workers, _ := registry.Watch(ctx, cli, "demo")
	ws := <-workers
	fmt.Println("workers:", len(ws), ws[0].GetId(), ws[0].GetAddress())
	if err := lead.PutPlan(ctx, 1, []byte(`{"stages":1}`)); err != nil {
		fmt.Println(err)
		return
	}
	leader, _ := registry.Leader(ctx, cli, "demo")
	v, plan, _ := registry.CurrentPlan(ctx, cli, "demo")
	fmt.Println("leader:", leader)
	fmt.Printf("plan %d: %s\n", v, plan)
	// Output:
	// workers: 1 w1 127.0.0.1:7001
	// leader: coord-1
	// plan 1: {"stages":1}
}
