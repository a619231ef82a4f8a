package main

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"

	"github.com/duetnet/duet/internal/docker"
	"github.com/duetnet/duet/internal/store"
)

// serveDocker serves the Docker network and IPAM driver on the plugin
// socket, over the same store as the agent, so the blocks Docker's
// containers take are routed like any pod's.
func serveDocker(ctx context.Context, log *slog.Logger, o options, openStore func() (store.Store, error)) (func(), error) {
	d := &docker.Driver{Node: o.node, OpenStore: openStore, Kernel: docker.NewHostKernel(os.Stderr), Rand: rand.Reader, Log: log, EngineNS: docker.EngineNS, SysctlLog: o.dockerSysctlLog}
	if err := d.Resync(); err != nil {
		log.Warn("docker: reprogramming published ports", "err", err)
	}
	stop, err := d.Serve(ctx, o.docker)
	if err != nil {
		return nil, err
	}
	log.Info("docker: serving the network and IPAM driver", "name", o.docker, "socket", docker.SocketPath(o.docker))
	return stop, nil
}
