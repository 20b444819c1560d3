package api

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/facesync/facesync/tasks"
)

// Key is one API key of the keys file. The key itself is not kept: only
// its SHA-256.
type Key struct {
	ID   string // label for logs and audit lines
	Apps []string
	All  bool // "*": every app
	hash [sha256.Size]byte
}

// Allows reports whether the key may act for appID.
func (k *Key) Allows(appID string) bool {
	if k.All {
		return true
	}
	for _, a := range k.Apps {
		if a == appID {
			return true
		}
	}
	return false
}

// Keys is the set of API keys of FACESYNC_API_KEYS_FILE.
type Keys struct {
	keys []Key
}

// Len is the number of keys.
func (ks *Keys) Len() int { return len(ks.keys) }

// Lookup returns the key whose SHA-256 is the token's, or nil. Every
// stored hash is compared, in constant time, so the time taken says
// nothing about which key or how much of it matched.
func (ks *Keys) Lookup(token string) *Key {
	if token == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range ks.keys {
		if subtle.ConstantTimeCompare(sum[:], ks.keys[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &ks.keys[found]
}

// LoadKeys reads a keys file (FACESYNC_API_KEYS_FILE).
func LoadKeys(path string) (*Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ks, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// ParseKeys reads one key a line, `KEY_ID SHA256_HEX APP_ID[,APP_ID...]`
// (`*` for every app); blank lines and `#` comments are skipped. An error
// names the line; it never repeats a hash.
func ParseKeys(r io.Reader) (*Keys, error) {
	ks := &Keys{}
	ids := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if prev, ok := ids[k.ID]; ok {
			return nil, fmt.Errorf("line %d: key id %q is already used on line %d", n, k.ID, prev)
		}
		if prev, ok := hashes[k.hash]; ok {
			return nil, fmt.Errorf("line %d: the same key hash as line %d", n, prev)
		}
		ids[k.ID], hashes[k.hash] = n, n
		ks.keys = append(ks.keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ks, nil
}

func parseKeyLine(line string) (Key, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Key{}, fmt.Errorf("want KEY_ID SHA256_HEX APP_ID[,APP_ID...], got %d fields", len(f))
	}
	k := Key{ID: f[0]}
	if !tasks.ValidID(k.ID) {
		return Key{}, fmt.Errorf("key id %q: want 1 to 32 characters of A-Z a-z 0-9 _ -", truncate(k.ID))
	}
	h, err := hex.DecodeString(f[1])
	if err != nil || len(h) != sha256.Size {
		return Key{}, errors.New("the second field is not a SHA-256 in hex (64 hex digits)")
	}
	copy(k.hash[:], h)
	for _, a := range strings.Split(f[2], ",") {
		switch {
		case a == "*":
			k.All = true
		case tasks.ValidID(a):
			k.Apps = append(k.Apps, a)
		default:
			return Key{}, fmt.Errorf("app id %q: want 1 to 32 characters of A-Z a-z 0-9 _ -, or *", truncate(a))
		}
	}
	return k, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// KeyBytes is how many random bytes a new key carries.
const KeyBytes = 32

// NewKey makes a key for the apps (or "*"), labelled id: the bearer token,
// to hand to the partner once, and the line for the keys file, which holds
// only its hash.
func NewKey(id string, apps []string) (token, line string, err error) {
	if !tasks.ValidID(id) {
		return "", "", fmt.Errorf("key id %q: want 1 to 32 characters of A-Z a-z 0-9 _ -", truncate(id))
	}
	if len(apps) == 0 {
		return "", "", errors.New("no app: want --apps A[,B...] or --apps '*'")
	}
	for _, a := range apps {
		if a != "*" && !tasks.ValidID(a) {
			return "", "", fmt.Errorf("app id %q: want 1 to 32 characters of A-Z a-z 0-9 _ -, or *", truncate(a))
		}
	}
	b := make([]byte, KeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("random key: %w", err)
	}
	// A prefix makes a leaked key easy to recognize (secret scanners, logs).
	token = "fsk_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	line = id + " " + hex.EncodeToString(sum[:]) + " " + strings.Join(apps, ",")
	return token, line, nil
}

// NewKeyID returns a random key id, for when the operator gives none.
func NewKeyID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key id: %w", err)
	}
	return "key-" + hex.EncodeToString(b), nil
}

// WriteNewKey makes a key (NewKey; a random id when id is empty) and
// writes it once to w with the line for the keys file: `facesync api-key
// new`. The key is not kept anywhere else.
func WriteNewKey(w io.Writer, id string, apps []string) error {
	if id == "" {
		var err error
		if id, err = NewKeyID(); err != nil {
			return err
		}
	}
	token, line, err := NewKey(id, apps)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "API key (shown only now; hand it to the partner, facesync keeps only its hash):\n%s\n\nline for FACESYNC_API_KEYS_FILE:\n%s\n", token, line)
	return err
}
