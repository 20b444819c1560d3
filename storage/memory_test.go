package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
)

// TestMemoryConformance runs the conformance suite on the in-memory sink.
func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T, o storagetest.Options) storagetest.Setup {
		m, err := storage.NewMemory(storage.MemoryConfig{Prefix: o.Prefix})
		if err != nil {
			t.Fatalf("NewMemory(prefix %q): %v", o.Prefix, err)
		}
		return storagetest.Setup{Sink: m, Bucket: storagetest.MemoryBucket{Memory: m}}
	})
}

func TestNewMemoryConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg     storage.MemoryConfig
		wantErr string // "" for a valid config
	}{
		{storage.MemoryConfig{}, ""},
		{storage.MemoryConfig{Prefix: "ev/", MaxBytes: 1 << 20, NowFunc: time.Now}, ""},
		{storage.MemoryConfig{Prefix: "evidence"}, "prefix"},
		{storage.MemoryConfig{Prefix: "/evidence/"}, "prefix"},
		{storage.MemoryConfig{MaxBytes: -1}, "max bytes"},
	}
	for _, tt := range tests {
		_, err := storage.NewMemory(tt.cfg)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("NewMemory(%+v) = %v, want nil", tt.cfg, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("NewMemory(%+v) = %v, want an error about %s", tt.cfg, err, tt.wantErr)
		}
	}
}

// TestMemoryMaxBytes checks that a sink at its bound refuses what would
// pass it, stores nothing of it, and counts a replaced file as freed.
func TestMemoryMaxBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, err := storage.NewMemory(storage.MemoryConfig{MaxBytes: 1000})
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	photo := storagetest.JPEG(600)
	pf, err := m.PutFile(ctx, appID, orderNo, storage.KindPhoto, bytes.NewReader(photo))
	if err != nil {
		t.Fatalf("PutFile(600 of 1000 bytes) = %v, want nil", err)
	}
	// A retry of the photo replaces it: 600 held, not 1200.
	if _, err := m.PutFile(ctx, appID, orderNo, storage.KindPhoto, bytes.NewReader(photo)); err != nil {
		t.Fatalf("PutFile(the same 600 bytes again) = %v, want nil", err)
	}
	if f, err := m.PutFile(ctx, appID, orderNo, storage.KindVideo, bytes.NewReader(storagetest.MP4(401))); !errors.Is(err, storage.ErrFull) {
		t.Errorf("PutFile(401 more bytes) = %+v, %v, want %v", f, err, storage.ErrFull)
	}
	if got := m.Keys(); len(got) != 1 || got[0] != pf.Key {
		t.Errorf("Keys() after a refused PutFile = %q, want only %q", got, pf.Key)
	}
	// 600 + 300 leaves too little room for the manifest.
	vf, err := m.PutFile(ctx, appID, orderNo, storage.KindVideo, bytes.NewReader(storagetest.MP4(300)))
	if err != nil {
		t.Fatalf("PutFile(300 more bytes) = %v, want nil", err)
	}
	man := &storage.Manifest{AppID: appID, OrderNo: orderNo, Files: []storage.File{pf, vf}}
	if k, err := m.PutManifest(ctx, man); !errors.Is(err, storage.ErrFull) {
		t.Errorf("PutManifest(past the bound) = %q, %v, want %v", k, err, storage.ErrFull)
	}
	m.DeleteObject(vf.Key)
	if k, err := m.PutManifest(ctx, &storage.Manifest{AppID: appID, OrderNo: orderNo, Files: []storage.File{pf}}); err != nil {
		t.Errorf("PutManifest(within the bound) = %q, %v, want nil", k, err)
	}
}

// TestMemoryConcurrent stores many orders at once (run with -race to see
// that the sink is safe for concurrent use) and checks each came out
// whole.
func TestMemoryConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, err := storage.NewMemory(storage.MemoryConfig{})
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			order := fmt.Sprint("ord-", i)
			pf, err := m.PutFile(ctx, appID, order, storage.KindPhoto, bytes.NewReader(storagetest.JPEG(1000+i)))
			if err != nil {
				t.Errorf("PutFile(%s): %v", order, err)
				return
			}
			if _, err := m.PutManifest(ctx, &storage.Manifest{AppID: appID, OrderNo: order, Files: []storage.File{pf}}); err != nil {
				t.Errorf("PutManifest(%s): %v", order, err)
				return
			}
			if rep, err := m.Verify(ctx, appID, order); err != nil || !rep.OK() {
				t.Errorf("Verify(%s) = %+v, %v, want ok", order, rep, err)
			}
		})
	}
	wg.Wait()
	if n := len(m.Keys()); n != 32 {
		t.Errorf("len(Keys()) = %d, want 32 (a photo and a manifest for each of 16 orders)", n)
	}
}

// TestMemoryObjectCopies checks that raw access hands out and takes in
// copies, so a test that changes a slice does not change what is stored.
func TestMemoryObjectCopies(t *testing.T) {
	t.Parallel()
	m, err := storage.NewMemory(storage.MemoryConfig{})
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	in := []byte("abc")
	m.SetObject("k", in, "text/plain")
	in[0] = 'x'
	out, ct, ok := m.Object("k")
	if !ok || string(out) != "abc" || ct != "text/plain" {
		t.Fatalf("Object(k) = %q, %q, %v, want abc, text/plain, true", out, ct, ok)
	}
	out[0] = 'y'
	if again, _, _ := m.Object("k"); string(again) != "abc" {
		t.Errorf("Object(k) after changing a returned slice = %q, want abc", again)
	}
	if _, _, ok := m.Object("missing"); ok {
		t.Errorf("Object(missing) ok = true, want false")
	}
}
