package idasctest

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// EvidenceNever, as Scenario.EvidenceDelay, means the order's photo and
// video never become ready: every get_file answer carries them empty.
const EvidenceNever time.Duration = -1

// Default sizes of the generated evidence.
const (
	DefaultPhotoSize int64 = 40 << 10
	DefaultVideoSize int64 = 200 << 10
)

// Evidence formats for Scenario.PhotoFormat and Scenario.VideoFormat.
const (
	FormatJPEG = "jpeg"
	FormatPNG  = "png"
	FormatMP4  = "mp4"
	FormatBin  = "bin" // neither an image nor a video: random bytes without a known signature
)

// Step is one scripted answer: Times requests in a row (0: every request
// from here on) are answered with HTTP status HTTPStatus and a text body
// when it is set, else with a JSON answer of Code and Msg that has no
// result object, as the provider answers a request it did not serve.
type Step struct {
	Code       string // provider code, such as "400504"
	Msg        string // "" means the fake's message for Code
	HTTPStatus int    // when set, an HTTP error answer rather than JSON
	Times      int    // requests answered so; 0 means every one from here on
}

// Scenario is how the fake answers /api/server/sync for one order. The zero
// value is an order that passed at once, with a small JPEG photo and a small
// MP4 video ready Options.EvidenceDelay after the first query.
//
// The failure counters are consumed in arrival order by the sync requests of
// the order whose signature was accepted, get_file or not, in stages: the
// Script's steps come first, one request after another; then the first
// HTTP500 requests get HTTP 500, the next Truncated answers are cut
// mid-body, the next NotReady answers are 66660011, and every later request
// gets the decision. Of the decision answers that carry evidence, the first
// EvidenceHTTP500 get HTTP 500 instead and the next EvidenceTruncated are cut
// in the middle of the evidence.
type Scenario struct {
	Code string // decision code; "" means "0"
	Msg  string // decision message; "" means the fake's message for Code ("请求成功" for 0, "认证未通过" for session outcomes)

	Script            []Step // scripted answers before everything else, such as two 400504 then the decision
	NotReady          int    // answers of 66660011 before the decision
	HTTP500           int    // requests answered HTTP 500 first
	Truncated         int    // answers cut mid-body (mid-evidence when they carry evidence)
	EvidenceHTTP500   int    // decision answers with evidence answered HTTP 500 instead
	EvidenceTruncated int    // decision answers with evidence cut in the middle of it

	// ThrottleApp, when positive, makes the order's first sync request open
	// a throttling window of this length for its whole app (Throttle).
	ThrottleApp time.Duration

	HTTPStatus int           // when set, every sync request is answered with this HTTP status and a text body
	Latency    time.Duration // wait before answering; the wait ends early when the client goes away

	// EvidenceDelay overrides Options.EvidenceDelay when positive;
	// EvidenceNever (any negative value) means evidence never arrives.
	EvidenceDelay time.Duration

	PhotoFormat string // FormatJPEG (default), FormatPNG or FormatBin
	PhotoSize   int64  // bytes; 0 means DefaultPhotoSize
	NoPhoto     bool   // the answer never has a photo field
	VideoFormat string // FormatMP4 (default) or FormatBin
	VideoSize   int64  // bytes; 0 means DefaultVideoSize
	NoVideo     bool   // the answer never has a video field

	EscapeSlashes bool // JSON writes "/" as "\/", inside base64 too
	LineBreaks    bool // base64 wrapped every 76 characters with an escaped "\r\n"
	CodeAsNumber  bool // "code":0 rather than "code":"0"
	ResultFirst   bool // "result" is the first member of the answer
	InvalidBase64 bool // one character in the middle of the video's base64 (the photo's when no video is sent) is not base64

	IDNo string // "" means "110101199003071234"
	Name string // "" means "张三"
}

// ScenarioFromOrderNo returns base changed by the scenario tokens found in
// orderNo (see the package documentation). Parts of the order number that
// are not tokens are ignored, so "ord7-nr2-esc" is base with NotReady 2 and
// EscapeSlashes set.
func ScenarioFromOrderNo(orderNo string, base Scenario) Scenario {
	s := base
	for _, tok := range strings.FieldsFunc(orderNo, func(r rune) bool { return r == '-' || r == '_' }) {
		applyToken(&s, strings.ToLower(tok))
	}
	return s
}

// applyToken applies one order-number token to s, ignoring anything that is
// not a well-formed token.
func applyToken(s *Scenario, tok string) {
	switch tok {
	case "png":
		s.PhotoFormat = FormatPNG
		return
	case "pbin":
		s.PhotoFormat = FormatBin
		return
	case "vbin":
		s.VideoFormat = FormatBin
		return
	case "nop":
		s.NoPhoto = true
		return
	case "nov":
		s.NoVideo = true
		return
	case "noev":
		s.EvidenceDelay = EvidenceNever
		return
	case "esc":
		s.EscapeSlashes = true
		return
	case "lb":
		s.LineBreaks = true
		return
	case "num":
		s.CodeAsNumber = true
		return
	case "rf":
		s.ResultFirst = true
		return
	case "bad64":
		s.InvalidBase64 = true
		return
	case "e500":
		s.HTTP500 = 1
		return
	case "ev500":
		s.EvidenceHTTP500 = 1
		return
	}
	// Longer prefixes first: "ev500x" before "e500x", "evtr" before "ed".
	if code, n, ok := codeTimes(tok, "c"); ok {
		if n == 0 {
			s.Code = code
		} else {
			s.Script = append(slices.Clip(s.Script), Step{Code: code, Times: n})
		}
	} else if st, n, ok := codeTimes(tok, "h"); ok && n > 0 {
		if status, _ := strconv.Atoi(st); status >= 100 && status <= 599 {
			s.Script = append(slices.Clip(s.Script), Step{HTTPStatus: status, Times: n})
		}
	} else if n, ok := count(tok, "ev500x"); ok {
		s.EvidenceHTTP500 = n
	} else if n, ok := count(tok, "e500x"); ok {
		s.HTTP500 = n
	} else if n, ok := count(tok, "evtr"); ok {
		s.EvidenceTruncated = n
	} else if n, ok := count(tok, "tr"); ok {
		s.Truncated = n
	} else if n, ok := count(tok, "nr"); ok {
		s.NotReady = n
	} else if d, ok := duration(tok, "thr"); ok && d > 0 {
		s.ThrottleApp = d
	} else if d, ok := duration(tok, "lat"); ok {
		s.Latency = d
	} else if d, ok := duration(tok, "ed"); ok && d > 0 {
		s.EvidenceDelay = d
	} else if n, ok := count(tok, "h"); ok && n >= 100 && n <= 599 {
		s.HTTPStatus = n
	} else if code, ok := strings.CutPrefix(tok, "f"); ok && code != "" && digits(code) {
		s.Code = code
	} else if n, ok := size(tok, "p"); ok && n > 0 {
		s.PhotoSize = n
	} else if n, ok := size(tok, "v"); ok && n > 0 {
		s.VideoSize = n
	}
}

// maxCount bounds the counters an order number can set.
const maxCount = 1 << 20

// count parses tok as prefix followed by a decimal count.
func count(tok, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok || rest == "" || !digits(rest) {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n > maxCount {
		return 0, false
	}
	return n, true
}

// codeTimes parses tok as prefix, a number of up to 9 digits and an
// optional "x" with a count of at least 1: "c400504x2" is 400504 twice,
// "c2008" is 2008 with n 0.
func codeTimes(tok, prefix string) (code string, n int, ok bool) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return "", 0, false
	}
	code, times, hasTimes := strings.Cut(rest, "x")
	if code == "" || len(code) > 9 || !digits(code) {
		return "", 0, false
	}
	if !hasTimes {
		return code, 0, true
	}
	n, ok = count("x"+times, "x")
	if !ok || n == 0 {
		return "", 0, false
	}
	return code, n, true
}

// scriptAt returns the step of script answering the order's n-th accepted
// request (counting from 0), or false and how far past the script's end n
// is.
func scriptAt(script []Step, n int) (step Step, ok bool, rest int) {
	for _, st := range script {
		if st.Times <= 0 || n < st.Times {
			return st, true, 0
		}
		n -= st.Times
	}
	return Step{}, false, n
}

// duration parses tok as prefix followed by a number of milliseconds, or a
// number with the unit ms, s or m.
func duration(tok, prefix string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return 0, false
	}
	unit := time.Millisecond
	switch {
	case strings.HasSuffix(rest, "ms"):
		rest = strings.TrimSuffix(rest, "ms")
	case strings.HasSuffix(rest, "s"):
		rest, unit = strings.TrimSuffix(rest, "s"), time.Second
	case strings.HasSuffix(rest, "m"):
		rest, unit = strings.TrimSuffix(rest, "m"), time.Minute
	}
	if rest == "" || !digits(rest) {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n > int64(24*time.Hour/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// maxSize bounds the evidence size an order number can ask for (4 GiB).
const maxSize = 4 << 30

// size parses tok as prefix followed by a number of bytes, or a number with
// the suffix k (KiB) or m (MiB).
func size(tok, prefix string) (int64, bool) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return 0, false
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(rest, "k"):
		rest, mult = strings.TrimSuffix(rest, "k"), 1<<10
	case strings.HasSuffix(rest, "m"):
		rest, mult = strings.TrimSuffix(rest, "m"), 1<<20
	}
	if rest == "" || !digits(rest) {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n > maxSize/mult {
		return 0, false
	}
	return n * mult, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
