package idasctest

import (
	"net/http/httptest"
	"testing"
)

// Server is a Fake served over HTTP on a loopback port.
type Server struct {
	*Fake
	// URL is the base URL, e.g. http://127.0.0.1:41234, with no trailing slash.
	URL string

	srv *httptest.Server
}

// NewServer starts a Fake configured by opts on a loopback port and closes
// it when the test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	f := New(opts)
	srv := httptest.NewServer(f)
	tb.Cleanup(srv.Close)
	return &Server{Fake: f, URL: srv.URL, srv: srv}
}

// Close stops the server before the test ends, for tests of a provider that
// has gone away. Requests then fail to connect.
func (s *Server) Close() { s.srv.Close() }
