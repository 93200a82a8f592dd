// Command redpanda-connect-peer is the benchmark peer of polaris-bridge: Redpanda Connect
// (Benthos) with only the components the benchmark needs (the kafka input, the http_client
// output), built from the Go module proxy because `go install` of the upstream command is
// refused (its go.mod has a replace directive).
package main

import (
	"context"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/connect/v4/public/components/io"
	_ "github.com/redpanda-data/connect/v4/public/components/kafka"
	_ "github.com/redpanda-data/connect/v4/public/components/pure"
)

func main() {
	service.RunCLI(context.Background())
}
