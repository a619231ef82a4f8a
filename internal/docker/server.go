package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// PluginDir is where Docker Engine looks for socket plugins by name.
const PluginDir = "/run/docker/plugins"

// contentType is the plugin protocol's media type.
const contentType = "application/vnd.docker.plugins.v1.2+json"

// Handler serves the protocol: POST /Plugin.Activate, /NetworkDriver.*
// and /IpamDriver.*. Unknown methods are answered 404, which Docker takes
// as "not implemented" for its optional ones.
func (d *Driver) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(method string, fn func(body []byte) (any, error)) {
		mux.HandleFunc("POST /"+method, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			var out any
			if err == nil {
				out, err = fn(body)
			}
			w.Header().Set("Content-Type", contentType)
			if err != nil {
				d.Log.Warn("docker: "+method+" failed", "err", err)
				w.WriteHeader(http.StatusInternalServerError)
				_ = json.NewEncoder(w).Encode(errResponse{Err: "duet: " + err.Error()})
				return
			}
			if out == nil {
				out = struct{}{}
			}
			_ = json.NewEncoder(w).Encode(out)
		})
	}
	none := func(fn func() (any, error)) func([]byte) (any, error) {
		return func([]byte) (any, error) { return fn() }
	}
	handle("Plugin.Activate", none(func() (any, error) {
		return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
	}))

	handle("NetworkDriver.GetCapabilities", none(func() (any, error) {
		return capabilitiesResponse{Scope: "local", ConnectivityScope: "local", GwAllocChecker: true}, nil
	}))
	handle("NetworkDriver.GwAllocCheck", body(func(req gwAllocCheckRequest) (any, error) {
		// Docker 28 asks whether to reserve gateway addresses: duet's
		// IPAM answers its pools' gateways itself, and with another
		// IPAM the gateway is what the bridge or the routes use.
		return gwAllocCheckResponse{}, nil
	}))
	handle("NetworkDriver.CreateNetwork", body(func(req createNetworkRequest) (any, error) { return nil, d.createNetwork(req) }))
	handle("NetworkDriver.DeleteNetwork", body(func(req networkRequest) (any, error) { return nil, d.deleteNetwork(req) }))
	handle("NetworkDriver.AllocateNetwork", none(func() (any, error) {
		return nil, errors.New("duet's Docker networks are local scope: swarm's global networks are not supported")
	}))
	handle("NetworkDriver.FreeNetwork", none(func() (any, error) { return nil, nil }))
	handle("NetworkDriver.CreateEndpoint", body(func(req createEndpointRequest) (any, error) { return d.createEndpoint(req) }))
	handle("NetworkDriver.DeleteEndpoint", body(func(req endpointRequest) (any, error) { return nil, d.deleteEndpoint(req) }))
	handle("NetworkDriver.EndpointOperInfo", body(func(req endpointRequest) (any, error) { return d.endpointInfo(req) }))
	handle("NetworkDriver.Join", body(func(req joinRequest) (any, error) { return d.join(req) }))
	handle("NetworkDriver.Leave", body(func(req endpointRequest) (any, error) { return nil, d.leave(req) }))
	handle("NetworkDriver.ProgramExternalConnectivity", body(func(req externalConnectivityRequest) (any, error) { return nil, d.programExternal(req) }))
	handle("NetworkDriver.RevokeExternalConnectivity", body(func(req externalConnectivityRequest) (any, error) { return nil, d.revokeExternal(req) }))
	handle("NetworkDriver.DiscoverNew", none(func() (any, error) { return nil, nil }))
	handle("NetworkDriver.DiscoverDelete", none(func() (any, error) { return nil, nil }))

	handle("IpamDriver.GetCapabilities", none(func() (any, error) {
		// No replay: the store keeps every pool and address across
		// restarts of Docker and of duetd.
		return ipamCapabilitiesResponse{}, nil
	}))
	handle("IpamDriver.GetDefaultAddressSpaces", none(func() (any, error) {
		return addressSpacesResponse{LocalDefaultAddressSpace: AddressSpace, GlobalDefaultAddressSpace: AddressSpace}, nil
	}))
	handle("IpamDriver.RequestPool", body(func(req requestPoolRequest) (any, error) { return d.requestPool(req) }))
	handle("IpamDriver.ReleasePool", body(func(req releasePoolRequest) (any, error) { return nil, d.releasePool(req) }))
	handle("IpamDriver.RequestAddress", body(func(req requestAddressRequest) (any, error) { return d.requestAddress(req) }))
	handle("IpamDriver.ReleaseAddress", body(func(req releaseAddressRequest) (any, error) { return nil, d.releaseAddress(req) }))
	return mux
}

// body decodes a request into T before calling fn; an empty body is T's
// zero value.
func body[T any](fn func(T) (any, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) {
		var req T
		if len(b) > 0 {
			if err := json.Unmarshal(b, &req); err != nil {
				return nil, fmt.Errorf("request is not JSON of the plugin protocol: %w", err)
			}
		}
		return fn(req)
	}
}

// SocketPath is the plugin socket of a driver name: Docker finds driver
// NAME at /run/docker/plugins/NAME.sock.
func SocketPath(name string) string { return filepath.Join(PluginDir, name+".sock") }

// Serve listens on the plugin socket for name until ctx ends, then
// removes the socket: Docker sees the plugin only while duetd runs.
func (d *Driver) Serve(ctx context.Context, name string) (stop func(), err error) {
	path := SocketPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s for the Docker plugin socket: %w", filepath.Dir(path), err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is served by another process already (another duetd --docker?): stop it, or pick another --docker-name", path)
	}
	_ = os.Remove(path) // a socket left by a duetd that was killed
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-ctx.Done():
		case <-done:
		}
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
		_ = os.Remove(path)
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}, nil
}
