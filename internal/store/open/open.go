// Package open opens the store a configuration names, so that every binary
// picks backends the same way.
package open

import (
	"fmt"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
)

// Store opens the datastore d for read and write.
func Store(d config.Datastore) (store.Store, error) {
	switch d.Type {
	case config.DatastoreBolt, "":
		path := d.Path
		if path == "" {
			path = config.DefaultBoltPath
		}
		return bolt.Open(path, bolt.Options{})
	}
	return nil, fmt.Errorf("datastore type %q is not available in this build: use %q", d.Type, config.DatastoreBolt)
}
