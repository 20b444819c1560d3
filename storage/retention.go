package storage

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultRetentionDays reads the bucket's default object-lock retention in
// days, a year counted as 366 (to err on the side of refusing, as
// CheckBucket does); 0 when the bucket has no object lock or no default
// retention, or the server does not implement the read. It is the one
// request the worker makes at start to refuse an evidence retention that
// object lock would outlive (CheckRetentionLock).
func (s *S3) DefaultRetentionDays(ctx context.Context) (int, error) {
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &s.cfg.Bucket})
	switch {
	case err == nil:
	case errorCode(err) == "ObjectLockConfigurationNotFoundError", notImplemented(err):
		return 0, nil
	default:
		return 0, fmt.Errorf("storage: bucket %s: object lock configuration: %w", s.cfg.Bucket, err)
	}
	c := out.ObjectLockConfiguration
	if c == nil || c.ObjectLockEnabled != types.ObjectLockEnabledEnabled || c.Rule == nil || c.Rule.DefaultRetention == nil {
		return 0, nil
	}
	d := c.Rule.DefaultRetention
	return int(aws.ToInt32(d.Days)) + 366*int(aws.ToInt32(d.Years)), nil
}
