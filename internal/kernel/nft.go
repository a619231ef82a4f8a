package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoNFTables means nftables cannot be used on this host: the nft
// binary is missing or the kernel lacks nf_tables.
var ErrNoNFTables = errors.New("nftables is not usable on this host")

// NFTApply runs script as one atomic nft transaction.
//
// Equivalent to: nft -f - < script
func NFTApply(script string) error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("%w: the nft command is missing (install Debian's nftables package)", ErrNoNFTables)
	}
	cmd := exec.Command(path, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "Operation not supported") || strings.Contains(msg, "Protocol not supported") {
			return fmt.Errorf("%w: the kernel refused (%s): load nf_tables (modprobe nf_tables)", ErrNoNFTables, firstLine(msg))
		}
		return fmt.Errorf("nft -f: %v: %s", err, msg)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
