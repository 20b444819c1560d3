package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/facesync/facesync/storage"
)

// S3Bucket is raw access to an S3 bucket, for a storage.S3 sink's tests.
// Client should be one without the options a test uses to watch or
// corrupt the sink's requests.
type S3Bucket struct {
	Client *s3.Client
	Name   string
}

var _ Bucket = S3Bucket{}

// Get implements Bucket.
func (b S3Bucket) Get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.Name, Key: &key})
	if err != nil {
		return nil, "", err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", err
	}
	return data, aws.ToString(out.ContentType), nil
}

// Put implements Bucket.
func (b S3Bucket) Put(ctx context.Context, key string, data []byte) error {
	_, err := b.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.Name, Key: &key, Body: bytes.NewReader(data)})
	return err
}

// Delete implements Bucket. In a versioned bucket it leaves a delete
// marker, as any client's delete does.
func (b S3Bucket) Delete(ctx context.Context, key string) error {
	_, err := b.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.Name, Key: &key})
	return err
}

// Keys implements Bucket: the keys ListObjectsV2 lists.
func (b S3Bucket) Keys(ctx context.Context) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(b.Client, &s3.ListObjectsV2Input{Bucket: &b.Name})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// Uploads implements Bucket: the multipart uploads ListMultipartUploads
// lists, each as its id and key.
func (b S3Bucket) Uploads(ctx context.Context) ([]string, error) {
	out, err := b.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &b.Name})
	if apiCode(err) == "NoSuchUpload" {
		// Some servers' answer for a bucket that never had an upload.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ups []string
	for _, u := range out.Uploads {
		ups = append(ups, fmt.Sprintf("multipart upload %q of %q", aws.ToString(u.UploadId), aws.ToString(u.Key)))
	}
	return ups, nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// MemoryBucket is raw access to a storage.Memory sink's objects.
type MemoryBucket struct {
	Memory *storage.Memory
}

var _ Bucket = MemoryBucket{}

// Get implements Bucket.
func (b MemoryBucket) Get(ctx context.Context, key string) ([]byte, string, error) {
	data, ct, ok := b.Memory.Object(key)
	if !ok {
		return nil, "", fmt.Errorf("no object %q", key)
	}
	return data, ct, ctx.Err()
}

// Put implements Bucket.
func (b MemoryBucket) Put(ctx context.Context, key string, data []byte) error {
	b.Memory.SetObject(key, data, "")
	return ctx.Err()
}

// Delete implements Bucket.
func (b MemoryBucket) Delete(ctx context.Context, key string) error {
	b.Memory.DeleteObject(key)
	return ctx.Err()
}

// Keys implements Bucket.
func (b MemoryBucket) Keys(ctx context.Context) ([]string, error) {
	return b.Memory.Keys(), ctx.Err()
}

// Uploads implements Bucket: a Memory sink stores a file in one step, so
// it never has an upload in progress.
func (b MemoryBucket) Uploads(ctx context.Context) ([]string, error) {
	return nil, ctx.Err()
}
