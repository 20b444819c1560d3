package storage

import "context"

// PurgeObjectsPaged is PurgeObjects with a listing page size and a
// DeleteObjects batch size small enough to exercise paging and batching
// with a few objects.
func (s *S3) PurgeObjectsPaged(ctx context.Context, appID, orderNo string, bypass bool, pageSize int32, batch int) ([]DeletedObject, error) {
	return s.purgeObjects(ctx, appID, orderNo, bypass, pageSize, batch)
}
