package kerneltest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// Iperf3 runs one iperf3 TCP flow for seconds from the namespace client
// (a name for ip netns exec) to dst in the namespace server, where a
// one-shot server is started on port, and returns what the server
// received, in Gbit/s. The client retries for up to 5 s while the server
// starts.
func Iperf3(t testing.TB, client, server, dst string, port, seconds int) float64 {
	t.Helper()
	s := exec.Command("ip", "netns", "exec", server, "iperf3", "-s", "-1", "-B", dst, "-p", fmt.Sprint(port))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Process.Kill(); _ = s.Wait() }()
	var out []byte
	var err error
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		if out, err = exec.Command("ip", "netns", "exec", client, "iperf3", "-J", "-t", fmt.Sprint(seconds), "-p", fmt.Sprint(port), "-c", dst).Output(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("iperf3 to %s: %v\n%s", dst, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}
