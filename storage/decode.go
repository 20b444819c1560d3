package storage

import (
	"encoding/json"
	"errors"
	"fmt"
)

// decodeManifest reads the stored manifest data found at key for the
// order, with the sink's key prefix. A manifest that is too large, not
// JSON, names another order, lists no files or lists objects outside its
// folder is ErrInvalidManifest.
func decodeManifest(data []byte, key, prefix, appID, orderNo string) (*Manifest, error) {
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("storage: %s is larger than %d bytes: %w", key, maxManifestSize, ErrInvalidManifest)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("storage: %s: %v: %w", key, err, ErrInvalidManifest)
	}
	if m.AppID != appID || m.OrderNo != orderNo {
		return nil, fmt.Errorf("storage: %s names order %q/%q: %w", key, truncate(m.AppID), truncate(m.OrderNo), ErrInvalidManifest)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("storage: %s lists no files: %w", key, ErrInvalidManifest)
	}
	if err := checkManifestFiles(prefix, &m); err != nil {
		return nil, fmt.Errorf("storage: %s: %v: %w", key, err, ErrInvalidManifest)
	}
	return &m, nil
}

// checkManifestFiles applies S3's checks of a manifest's files, which
// depend on the key prefix alone.
func checkManifestFiles(prefix string, m *Manifest) error {
	return (&S3{cfg: Config{Prefix: prefix}}).checkFiles(m)
}

// checkManifest refuses a manifest PutManifest may not write (none, bad
// ids, no files, files not of its order) and returns its key, for the
// sink whose key prefix is prefix.
func checkManifest(prefix string, m *Manifest) (string, error) {
	if m == nil {
		return "", errors.New("storage: nil manifest")
	}
	if err := checkIDs(m.AppID, m.OrderNo); err != nil {
		return "", err
	}
	key := prefix + m.AppID + "/" + m.OrderNo + "/" + ManifestName
	if len(m.Files) == 0 {
		return "", fmt.Errorf("storage: manifest %s lists no files", key)
	}
	if err := checkManifestFiles(prefix, m); err != nil {
		return "", fmt.Errorf("storage: manifest %s: %w", key, err)
	}
	return key, nil
}
