package podnet

import "fmt"

// SpecError is a Spec that Plan refuses; Field names the culprit, e.g.
// "Addresses[1]", so the caller can point at the configuration or IPAM
// result that produced it.
type SpecError struct {
	Field  string
	Reason string
}

func (e *SpecError) Error() string { return fmt.Sprintf("podnet: spec %s: %s", e.Field, e.Reason) }

func specErr(field, format string, args ...any) *SpecError {
	return &SpecError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// NetNSError means the pod's network namespace is missing or is not a
// network namespace: the container is gone, not a transient failure. The
// plugin answers it with CNI error 4 ("invalid netns", the code for a
// CNI_NETNS that is not a network namespace).
type NetNSError struct {
	Path string
	Err  error
}

func (e *NetNSError) Error() string { return fmt.Sprintf("podnet: netns %s: %v", e.Path, e.Err) }
func (e *NetNSError) Unwrap() error { return e.Err }

// LinkExistsError means Setup found an interface under a name it must
// create, and it is not the veth pair a previous attempt of the same ADD
// made. NetNS is the pod's namespace path, or "" for the host.
type LinkExistsError struct {
	Name  string
	NetNS string
}

func (e *LinkExistsError) Error() string {
	where := "host netns"
	if e.NetNS != "" {
		where = "netns " + e.NetNS
	}
	return fmt.Sprintf("podnet: interface %s already exists in %s", e.Name, where)
}
