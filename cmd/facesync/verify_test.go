package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/facesync/facesync/storage"
)

// TestVerify stores an evidence set, then breaks it one way at a time:
// verify must pass on the intact set and fail naming what changed.
func TestVerify(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	client := st.s3.Client()
	sink, err := storage.NewS3(client, storage.Config{Bucket: st.s3.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(order string) (photo, video storage.File) {
		t.Helper()
		var err error
		photo, err = sink.PutFile(ctx, testApp, order, "photo", bytes.NewReader(append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte("p"), 1000)...)))
		if err != nil {
			t.Fatal(err)
		}
		video, err = sink.PutFile(ctx, testApp, order, "video", bytes.NewReader(append([]byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p'}, bytes.Repeat([]byte("v"), 5000)...)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.PutManifest(ctx, &storage.Manifest{AppID: testApp, OrderNo: order, Files: []storage.File{photo, video}}); err != nil {
			t.Fatal(err)
		}
		return photo, video
	}
	overwrite := func(key string, body []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.s3.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}

	put("intact")
	code, out, errOut := st.run(t, "verify", "--app-id", testApp, "--order-no", "intact")
	if code != 0 || !strings.Contains(out, "ok: 2 files match their manifest") {
		t.Fatalf("verify intact: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	photo, _ := put("changed")
	overwrite(photo.Key, append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte("P"), 1000)...))
	code, out, errOut = st.run(t, "verify", "--app-id", testApp, "--order-no", "changed")
	if code != 1 || !lineWith(out, "hash_mismatch", "photo", photo.Key) || !strings.Contains(errOut, "does not match") {
		t.Errorf("verify changed object: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	_, video := put("missing")
	if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.s3.Bucket), Key: aws.String(video.Key)}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = st.run(t, "verify", "--app-id", testApp, "--order-no", "missing")
	if code != 1 || !lineWith(out, "missing", "video", video.Key) {
		t.Errorf("verify missing object: exit %d, stdout %q", code, out)
	}

	put("edited")
	key, _ := sink.ManifestKey(testApp, "edited")
	m, err := sink.GetManifest(ctx, testApp, "edited")
	if err != nil {
		t.Fatal(err)
	}
	m.Files[1].SHA256 = strings.Repeat("0", 64)
	raw := []byte(`{"app_id":"` + testApp + `","order_no":"edited","files":[` +
		`{"kind":"photo","key":"` + m.Files[0].Key + `","content_type":"image/jpeg","size":` + itoa(m.Files[0].Size) + `,"sha256":"` + m.Files[0].SHA256 + `"},` +
		`{"kind":"video","key":"` + m.Files[1].Key + `","content_type":"video/mp4","size":` + itoa(m.Files[1].Size) + `,"sha256":"` + m.Files[1].SHA256 + `"}]}`)
	overwrite(key, raw)
	code, out, _ = st.run(t, "verify", "--app-id", testApp, "--order-no", "edited")
	if code != 1 || !lineWith(out, "hash_mismatch", "video", m.Files[1].Key) {
		t.Errorf("verify changed manifest: exit %d, stdout %q", code, out)
	}

	code, _, errOut = st.run(t, "verify", "--app-id", testApp, "--order-no", "nothing")
	if code != 1 || !strings.Contains(errOut, "no manifest") {
		t.Errorf("verify without manifest: exit %d, stderr %q", code, errOut)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// lineWith reports whether one line of out holds every part.
func lineWith(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}
