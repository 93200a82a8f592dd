// Command redpanda-connect-peer is the benchmark peer of polaris-bridge: Redpanda Connect
// (Benthos) with only the components the benchmark needs (the kafka input, the http_client
// output), built from the Go module proxy because `go install` of the upstream command is
// refused (its go.mod has a replace directive).
//
// One knob is added, for the benchmark's fairness: PEER_MAX_IDLE_CONNS_PER_HOST sets
// MaxIdleConnsPerHost of Go's default HTTP transport, which http_client uses (without TLS or
// a proxy). Go's default is 2: with max_in_flight 64 to one host, every request beyond the
// second idle connection closes its connection after the response, so most requests open a
// new TCP connection. Unset, the transport is Go's default.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/connect/v4/public/components/io"
	_ "github.com/redpanda-data/connect/v4/public/components/kafka"
	_ "github.com/redpanda-data/connect/v4/public/components/pure"
)

func main() {
	if v := os.Getenv("PEER_MAX_IDLE_CONNS_PER_HOST"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "PEER_MAX_IDLE_CONNS_PER_HOST=%q is not a count\n", v)
			os.Exit(2)
		}
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			t.MaxIdleConnsPerHost = n
			if t.MaxIdleConns < n {
				t.MaxIdleConns = n
			}
		}
	}
	service.RunCLI(context.Background())
}
