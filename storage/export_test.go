package storage

import "context"

// PurgeObjectsPaged is PurgeObjects with a listing page size and a
// DeleteObjects batch size small enough to exercise paging and batching
// with a few objects.
func (s *S3) PurgeObjectsPaged(ctx context.Context, appID, orderNo string, bypass bool, pageSize int32, batch int) ([]DeletedObject, error) {
	return s.purgeObjects(ctx, appID, orderNo, bypass, pageSize, batch)
}

// SubsetIDs gives the order in which SetupLifecycle tries subsets of the
// wanted rules, by their IDs.
func SubsetIDs(lc LifecycleConfig) [][]string {
	var out [][]string
	for _, sub := range subsets(wantedRules(DefaultPrefix, lc)) {
		ids := []string{}
		for _, r := range sub {
			ids = append(ids, *r.ID)
		}
		out = append(out, ids)
	}
	return out
}
