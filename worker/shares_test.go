package worker

import (
	"slices"
	"testing"
)

// TestDecisionShares: the decision servers share the concurrency exactly,
// one per 12 slots (rounded up), at most 8, none without a slot.
func TestDecisionShares(t *testing.T) {
	for _, tt := range []struct {
		concurrency int
		want        []int
	}{
		{1, []int{1}},
		{12, []int{12}},
		{13, []int{7, 6}},
		{50, []int{10, 10, 10, 10, 10}},
		{51, []int{11, 10, 10, 10, 10}},
		{200, []int{25, 25, 25, 25, 25, 25, 25, 25}},
		{1001, []int{126, 125, 125, 125, 125, 125, 125, 125}},
	} {
		if got := decisionShares(tt.concurrency); !slices.Equal(got, tt.want) {
			t.Errorf("decisionShares(%d) = %v, want %v", tt.concurrency, got, tt.want)
		}
	}
	for c := 1; c <= 2000; c++ {
		shares := decisionShares(c)
		sum := 0
		for _, n := range shares {
			if n < 1 {
				t.Fatalf("decisionShares(%d) = %v: a server without a slot", c, shares)
			}
			sum += n
		}
		if sum != c || len(shares) > maxDecisionServers {
			t.Fatalf("decisionShares(%d) = %v: %d slots on %d servers", c, shares, sum, len(shares))
		}
	}
}
