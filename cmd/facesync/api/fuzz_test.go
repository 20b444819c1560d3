package api_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzPostOrder sends arbitrary bodies to POST /v1/orders over real HTTP:
// never a 5xx, never a panic, and every answer as the OpenAPI document
// says. `go test` runs the seeds; `go test -fuzz FuzzPostOrder` explores.
func FuzzPostOrder(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `1e400`,
		`{"app_id":"TIDA0001","order_no":"ord0001"}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":"1"}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":3}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":3.5}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":null}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":[1]}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","extra":1}`,
		`{"app_id":"TIDA0001","order_no":"ord0001"}{"app_id":"x"}`,
		`{"app_id":"TIDA0001","order_no":"` + "\u00e9" + `"}`,
		`{"app_id":"TIDA0001","order_no":"a\u0000b"}`,
		`{"app_id":"TIDA0001","APP_ID":"TIDB0002","order_no":"dup"}`,
		`{"app_id":"TIDA0001","order_no":"ord0001","get_file":"` + "\xff" + `"}`,
		`{"app_id":"TIDA0001","order_no":"0123456789012345678901234567890123"}`,
		`{"app_id":{"nested":{"deep":[[[[[]]]]]}},"order_no":"o"}`,
		"\xef\xbb\xbf{\"app_id\":\"TIDA0001\",\"order_no\":\"bom\"}",
	} {
		f.Add([]byte(seed))
	}
	b := setup(f, options{discardLogs: true})
	base := &http.Client{Transport: b.val.base}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, b.url+"/v1/orders", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+b.keyAll)
		req.Header.Set("Content-Type", "application/json")
		resp, err := base.Do(req)
		if err != nil {
			t.Fatalf("POST: %v (a panic or a dropped connection)", err)
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("POST %q = %d %s, want no 5xx", body, resp.StatusCode, rb)
		}
		if err := validateResponse(b.val.doc, b.val.router, req, resp, rb); err != nil {
			t.Fatalf("POST %q = %d %s: %v", body, resp.StatusCode, rb, err)
		}
	})
}
