package evjson

import (
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// encOpts says how encode writes a file into a body: every way the
// provider, or a proxy in front of it, may spell the same base64 text.
type encOpts struct {
	escapeSlash bool   // '/' as \/
	uEvery      int    // every n-th character as \u00XX (0: none)
	lineEvery   int    // a line break every n characters (0: none)
	lineBreak   string // its spelling in the body, e.g. `\r\n` or a raw "\n"
	dataURL     string // a data URL header before the text, e.g. "data:image/jpeg;base64,"
	noPad       bool   // drop the final '='
}

// encode writes data as the body text of a JSON string, without quotes.
func encode(data []byte, o encOpts) string {
	text := base64.StdEncoding.EncodeToString(data)
	if o.noPad {
		text = strings.TrimRight(text, "=")
	}
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(o.dataURL, "/", `\/`))
	for i := 0; i < len(text); i++ {
		if o.lineEvery > 0 && i > 0 && i%o.lineEvery == 0 {
			b.WriteString(o.lineBreak)
		}
		c := text[i]
		switch {
		case o.uEvery > 0 && i%o.uEvery == 0:
			// Alternate hex case: both are valid JSON.
			if i%2 == 0 {
				fmt.Fprintf(&b, `\u%04X`, c)
			} else {
				fmt.Fprintf(&b, `\u%04x`, c)
			}
		case c == '/' && o.escapeSlash:
			b.WriteString(`\/`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// bodyOpts lays out a sync answer around the files.
type bodyOpts struct {
	resultFirst bool // "result" before "code"
	videoFirst  bool // video before photo
	nested      int  // extra objects between "result" and the files (not with topLevel)
	codeNumber  bool // "code":0 rather than "code":"0"
	topLevel    bool // files at the top level rather than under "result"
}

// syncBody builds a realistic answer; an empty photo or video text leaves
// that member out.
func syncBody(photo, video string, o bodyOpts) string {
	code := `"code":"0"`
	if o.codeNumber {
		code = `"code":0`
	}
	var files []string
	if photo != "" {
		files = append(files, `"photo":"`+photo+`"`)
	}
	if video != "" {
		files = append(files, `"video":"`+video+`"`)
	}
	if o.videoFirst {
		for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
			files[i], files[j] = files[j], files[i]
		}
	}
	ev := strings.Join(files, ",")
	for range o.nested * boolInt(!o.topLevel && ev != "") {
		ev = `"files":{"kind":"evidence",` + ev + `,"n":[1,2,{"x":null}]}`
	}
	result := `"result":{"bizSeqNo":"18081020001015300215034200859792","transactionTime":"20180810150342",` +
		`"orderNo":"ord0001","idNo":"110***********1234","idType":"01","name":"张*",` +
		`"liveRate":"100","similarity":95.0,"occurredTime":"20180810150152","success":false`
	if ev != "" && !o.topLevel {
		result += "," + ev
	}
	result += "}"
	head := code + `,"msg":"请求成功","bizSeqNo":"18081020001015300215034200859792"`
	tail := `"transactionTime":"20180810150342","app_id":"TIDA0001","order_no":"ord0001"`
	if ev != "" && o.topLevel {
		tail += "," + ev
	}
	if o.resultFirst {
		return "{" + result + "," + head + "," + tail + "}"
	}
	return "{" + head + "," + result + "," + tail + "}"
}

// got is what one Extract call produced.
type got struct {
	fields  *Fields
	files   map[string][]byte
	order   []string
	readErr map[string]error // the error the callback's reader returned
	err     error
}

// run extracts body through wrap (nil: a plain reader), reading each file
// fully with io.ReadAll as an uploader would.
func run(body string, max int64, wrap func(io.Reader) io.Reader) got {
	g := got{files: map[string][]byte{}, readErr: map[string]error{}}
	var r io.Reader = strings.NewReader(body)
	if wrap != nil {
		r = wrap(r)
	}
	g.fields, g.err = Extract(r, max, func(kind string, r io.Reader) error {
		g.order = append(g.order, kind)
		b, err := io.ReadAll(r)
		g.files[kind] = b
		g.readErr[kind] = err
		return err
	})
	return g
}

// payload returns n bytes that differ from call to call of seed.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
