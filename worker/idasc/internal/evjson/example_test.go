package evjson_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"github.com/facesync/facesync/worker/idasc/internal/evjson"
)

// The callback streams each file where it belongs (here into a hash);
// Extract returns the small fields once the body is read.
func ExampleExtract() {
	body := `{"code":"0","msg":"请求成功","result":{"orderNo":"ord0001",` +
		`"photo":"data:image\/jpeg;base64,\/9j\/4AAQ","video":"","liveRate":100}}`
	fields, err := evjson.Extract(strings.NewReader(body), 256<<20, func(kind string, r io.Reader) error {
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes, sha256 %x\n", kind, n, h.Sum(nil)[:4])
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(fields.Top["code"], fields.Result["orderNo"], fields.Result["liveRate"])
	// Output:
	// photo: 6 bytes, sha256 fc16d7dc
	// 0 ord0001 100
}
