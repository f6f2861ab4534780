// Command compose_check loads a Compose file the way `docker compose config` does.
//
// It uses compose-spec/compose-go, the loader Docker Compose itself is built on: schema
// validation, interpolation from an env file, profiles. It prints the resolved model as
// JSON, or the loader's error and exit status 1. The tests use it where the docker
// compose plugin is missing.
//
// Usage: compose_check COMPOSE_FILE ENV_FILE [PROFILE...]
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: compose_check COMPOSE_FILE ENV_FILE [PROFILE...]")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		[]string{os.Args[1]},
		cli.WithName("inbec-export"),
		cli.WithEnvFiles(os.Args[2]),
		cli.WithDotEnv,
		cli.WithProfiles(os.Args[3:]),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	model, err := json.Marshal(project)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(model))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
