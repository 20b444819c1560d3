package idasc

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"sort"
	"strings"
)

// Version is the only API version the provider's server API accepts.
const Version = "1.0.0"

// Sign computes the provider's request signature: the values are sorted in
// byte order, concatenated, hashed with SHA-1 and written as 40 upper-case
// hex digits. For /api/server/sync the values are app_id, order_no, version,
// the SIGN ticket and the nonce.
func Sign(values ...string) string {
	v := append([]string(nil), values...)
	sort.Strings(v)
	sum := sha1.Sum([]byte(strings.Join(v, "")))
	// hex.EncodeToString always yields two digits per byte, so leading
	// zeros are kept.
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

const nonceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewNonce returns 32 random letters and digits from crypto/rand.
func NewNonce() string {
	var b [32]byte
	out := make([]byte, 32)
	// Rejection sampling keeps the distribution uniform: 62*4 = 248 < 256.
	for i := 0; i < len(out); {
		_, _ = rand.Read(b[:]) // documented to never return an error
		for _, c := range b {
			if c >= 248 {
				continue
			}
			out[i] = nonceAlphabet[int(c)%len(nonceAlphabet)]
			i++
			if i == len(out) {
				break
			}
		}
	}
	return string(out)
}
