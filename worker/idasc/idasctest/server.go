package idasctest

import (
	"net"
	"net/http"
	"time"
)

// TB is the part of testing.TB that NewServer uses. Taking it rather than
// testing.TB keeps the testing package out of the facesync binary, which
// links this package for `facesync fake-idasc` and the demo.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Server is a Fake served over HTTP on a loopback port.
type Server struct {
	*Fake
	// URL is the base URL, e.g. http://127.0.0.1:41234, with no trailing slash.
	URL string

	srv *http.Server
}

// NewServer starts a Fake configured by opts on a loopback port and closes
// it when the test ends.
func NewServer(tb TB, opts Options) *Server {
	tb.Helper()
	f := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("idasctest: listen on loopback: %v", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s := &Server{Fake: f, URL: "http://" + ln.Addr().String(), srv: srv}
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server before the test ends, for tests of a provider that
// has gone away: it closes the listener and every connection, so requests
// then fail to connect. Closing twice is harmless.
func (s *Server) Close() { _ = s.srv.Close() }
