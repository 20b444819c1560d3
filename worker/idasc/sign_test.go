package idasc_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/facesync/facesync/worker/idasc"
)

func TestSign(t *testing.T) {
	t.Parallel()
	// Expected values were computed outside Go: the values sorted in byte
	// order (LC_ALL=C sort), concatenated and piped through sha1sum.
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{
			name: "published example",
			values: []string{
				"IDAXXXXX", "userID19959248596551", "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T", "1.0.0",
				"XO99Qfxlti9iTVgHAjwvJdAZKN3nMuUhrsPdPlPVKlcyS50N6tlLnfuFBPIucaMS",
			},
			want: "D7606F1741DDCF90757DA924EDCF152A200AC7F0",
		},
		{
			// SHA-1 starts with a zero byte (found by brute force):
			// dropping leading zeros would give 37 digits.
			name:   "leading zero byte",
			values: []string{"TIDA0001", "order972", "1.0.0", "ticketZeroByte", "nonce0123456789abcdefghijklmnopq"},
			want:   "000D8D79B82196A821B77EEB1E89F504D6E4B8E4",
		},
		{
			// UTF-8 bytes sort 张 (E5) before 身 (E8).
			name:   "non-ASCII",
			values: []string{"身份证", "张三", "ID_1", "1.0.0"},
			want:   "30DFA23A0276FC158116B132816116CC3F7D6FA0",
		},
		{
			// Byte order, not dictionary order: Z < a < É.
			name:   "byte order",
			values: []string{"École", "apple", "Zebra"},
			want:   "8706FF4BB65660E275D1FB282FB4CE434A534685",
		},
		{
			name:   "nothing",
			values: nil,
			want:   "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tt.values)
			if got := idasc.Sign(in...); got != tt.want {
				t.Errorf("Sign(%q) = %s, want %s", tt.values, got, tt.want)
			}
			if !slices.Equal(in, tt.values) {
				t.Errorf("Sign(%q) reordered its argument to %q", tt.values, in)
			}
			rev := slices.Clone(tt.values)
			slices.Reverse(rev)
			if got := idasc.Sign(rev...); got != tt.want {
				t.Errorf("Sign(%q) = %s, want %s (order of arguments must not matter)", rev, got, tt.want)
			}
		})
	}
}

func TestNewNonce(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
	seen := make(map[string]bool)
	for range 100 {
		n := idasc.NewNonce()
		if !re.MatchString(n) {
			t.Fatalf("NewNonce() = %q, want 32 letters and digits", n)
		}
		if seen[n] {
			t.Fatalf("NewNonce() = %q twice in 100 calls", n)
		}
		seen[n] = true
	}
}
