package cni

import (
	"log"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// PluginMain is skel.PluginMainFuncs with skel's own environment errors
// explained (see EnvError): what both duet plugins run as main.
func PluginMain(funcs skel.CNIFuncs, about string) {
	e := skel.PluginMainFuncsWithError(funcs, SupportedVersions, about)
	if e == nil {
		return
	}
	e = EnvError(e, os.Getenv("CNI_COMMAND"), os.Getenv("CNI_NETNS"))
	if err := e.Print(); err != nil {
		log.Print("Error writing error JSON to stdout: ", err)
	}
	os.Exit(1)
}

// netnsHint is the fix for a missing CNI_NETNS.
const netnsHint = "the runtime must pass the container's network namespace path in CNI_NETNS, e.g. /var/run/netns/NAME (only DEL may leave it empty)"

// EnvError adds the fix to skel's answer when CNI_NETNS is missing for a
// command that needs it (ADD and CHECK; the spec lets DEL run without it,
// for a namespace that is already gone). skel checks the environment
// before the plugin's own code runs, and says only "required env
// variables [CNI_NETNS] missing"; command and netns are CNI_COMMAND and
// CNI_NETNS as the plugin saw them. Any other error is returned as is.
func EnvError(e *types.Error, command, netns string) *types.Error {
	if e == nil || e.Code != types.ErrInvalidEnvironmentVariables || netns != "" ||
		(command != "ADD" && command != "CHECK") || !strings.Contains(e.Msg, "CNI_NETNS") {
		return e
	}
	return types.NewError(e.Code, e.Msg+": "+netnsHint, e.Details)
}
