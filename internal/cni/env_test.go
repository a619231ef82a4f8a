package cni

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestEnvError(t *testing.T) {
	missing := types.NewError(types.ErrInvalidEnvironmentVariables, "required env variables [CNI_NETNS] missing", "")
	for _, cmd := range []string{"ADD", "CHECK"} {
		e := EnvError(missing, cmd, "")
		if e.Code != types.ErrInvalidEnvironmentVariables || !strings.HasPrefix(e.Msg, missing.Msg) || !strings.Contains(e.Msg, "/var/run/netns/") {
			t.Errorf("%s: %+v, want code 4 with the fix", cmd, e)
		}
	}
	if missing.Msg != "required env variables [CNI_NETNS] missing" {
		t.Errorf("EnvError changed its argument: %q", missing.Msg)
	}
	other := types.NewError(types.ErrInvalidEnvironmentVariables, "required env variables [CNI_IFNAME] missing", "")
	for _, c := range []struct {
		name       string
		e          *types.Error
		cmd, netns string
	}{
		{"no error", nil, "ADD", ""},
		{"DEL may omit it", missing, "DEL", ""},
		{"GC has none", missing, "GC", ""},
		{"another variable", other, "ADD", ""},
		{"netns given", missing, "ADD", "/var/run/netns/x"},
		{"another code", types.NewError(types.ErrInternal, "CNI_NETNS", ""), "ADD", ""},
	} {
		if got := EnvError(c.e, c.cmd, c.netns); got != c.e {
			t.Errorf("%s: %+v, want it unchanged", c.name, got)
		}
	}
}
