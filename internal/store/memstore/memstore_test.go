package memstore

import (
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/storetest"
)

// The fake must behave like the real backends, or tests on it lie.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New() })
}
