// orasgo resolves an image and lists its referrers with oras-go in-process, as Ratify and notation
// do, N times over one warm repository client, and prints the per-operation latencies as JSON.
// bench/bench_discover.py runs it beside Referee's client on the same registry.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

func main() {
	ref := flag.String("ref", "", "registry/repository:tag")
	n := flag.Int("n", 50, "operations")
	plainHTTP := flag.Bool("plain-http", false, "use HTTP")
	artifactType := flag.String("artifact-type", "", "referrers filter")
	flag.Parse()

	repo, err := remote.NewRepository(*ref)
	if err != nil {
		fail(err)
	}
	repo.PlainHTTP = *plainHTTP
	ctx := context.Background()
	tag := repo.Reference.Reference
	samples := make([]float64, 0, *n)
	found := 0
	for i := 0; i < *n; i++ {
		start := time.Now()
		desc, err := repo.Resolve(ctx, tag)
		if err != nil {
			fail(err)
		}
		found = 0
		err = repo.Referrers(ctx, desc, *artifactType, func(refs []ocispec.Descriptor) error {
			found += len(refs)
			return nil
		})
		if err != nil {
			fail(err)
		}
		samples = append(samples, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(samples)
	sum := 0.0
	for _, s := range samples {
		sum += s
	}
	out := map[string]any{
		"ops": *n, "referrers": found,
		"mean_ms": sum / float64(len(samples)),
		"p50_ms":  samples[len(samples)/2],
		"p95_ms":  samples[len(samples)*95/100],
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "orasgo:", err)
	os.Exit(1)
}
