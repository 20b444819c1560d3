package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Links is the Linker of an S3 bucket: it checks that the object is
// there through the client facesync reaches the store by, and presigns the
// link with a client for the address partners reach it by
// (FACESYNC_S3_PUBLIC_ENDPOINT).
type S3Links struct {
	bucket  string
	head    *s3.Client
	presign *s3.PresignClient
}

// NewS3Links returns the Linker for bucket. internal is the client facesync
// reaches the store by; public the one built for the public endpoint (the
// same client when partners reach the store at the same address).
func NewS3Links(internal, public *s3.Client, bucket string) (*S3Links, error) {
	if internal == nil || public == nil || bucket == "" {
		return nil, errors.New("api: S3 links need both clients and the bucket")
	}
	return &S3Links{bucket: bucket, head: internal, presign: s3.NewPresignClient(public)}, nil
}

// Link presigns a GET of key valid for ttl, once the object is known to
// exist.
func (l *S3Links) Link(ctx context.Context, key string, ttl time.Duration) (string, error) {
	_, err := l.head.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(l.bucket), Key: aws.String(key)})
	if err != nil {
		if notFound(err) {
			return "", fmt.Errorf("%s: %w", key, ErrNotStored)
		}
		return "", fmt.Errorf("head evidence object: %w", err)
	}
	req, err := l.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign evidence link: %w", err)
	}
	return req.URL, nil
}

func notFound(err error) bool {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")
}
