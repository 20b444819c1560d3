package idasctest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/idasc"
)

func TestScenarioFromOrderNo(t *testing.T) {
	t.Parallel()
	base := Scenario{IDNo: "X", PhotoSize: 7}
	tests := []struct {
		orderNo string
		want    Scenario
	}{
		{"ord0001", base},
		{"", base},
		{"o-f66660015", Scenario{IDNo: "X", PhotoSize: 7, Code: "66660015"}},
		{"o-F0", Scenario{IDNo: "X", PhotoSize: 7, Code: "0"}},
		{"o_nr3", Scenario{IDNo: "X", PhotoSize: 7, NotReady: 3}},
		{"o-e500", Scenario{IDNo: "X", PhotoSize: 7, HTTP500: 1}},
		{"o-e500x2", Scenario{IDNo: "X", PhotoSize: 7, HTTP500: 2}},
		{"o-tr2", Scenario{IDNo: "X", PhotoSize: 7, Truncated: 2}},
		{"o-ev500", Scenario{IDNo: "X", PhotoSize: 7, EvidenceHTTP500: 1}},
		{"o-ev500x3", Scenario{IDNo: "X", PhotoSize: 7, EvidenceHTTP500: 3}},
		{"o-evtr1", Scenario{IDNo: "X", PhotoSize: 7, EvidenceTruncated: 1}},
		{"o-h404", Scenario{IDNo: "X", PhotoSize: 7, HTTPStatus: 404}},
		{"o-lat200", Scenario{IDNo: "X", PhotoSize: 7, Latency: 200 * time.Millisecond}},
		{"o-lat200ms", Scenario{IDNo: "X", PhotoSize: 7, Latency: 200 * time.Millisecond}},
		{"o-lat2s", Scenario{IDNo: "X", PhotoSize: 7, Latency: 2 * time.Second}},
		{"o-lat1m", Scenario{IDNo: "X", PhotoSize: 7, Latency: time.Minute}},
		{"o-ed3s", Scenario{IDNo: "X", PhotoSize: 7, EvidenceDelay: 3 * time.Second}},
		{"o-ed500ms", Scenario{IDNo: "X", PhotoSize: 7, EvidenceDelay: 500 * time.Millisecond}},
		{"o-noev", Scenario{IDNo: "X", PhotoSize: 7, EvidenceDelay: EvidenceNever}},
		{"o-p100", Scenario{IDNo: "X", PhotoSize: 100}},
		{"o-p500k", Scenario{IDNo: "X", PhotoSize: 500 << 10}},
		{"o-p1m", Scenario{IDNo: "X", PhotoSize: 1 << 20}},
		{"o-v200m", Scenario{IDNo: "X", PhotoSize: 7, VideoSize: 200 << 20}},
		{"o-png", Scenario{IDNo: "X", PhotoSize: 7, PhotoFormat: FormatPNG}},
		{"o-pbin-vbin", Scenario{IDNo: "X", PhotoSize: 7, PhotoFormat: FormatBin, VideoFormat: FormatBin}},
		{"o-nop-nov", Scenario{IDNo: "X", PhotoSize: 7, NoPhoto: true, NoVideo: true}},
		{"o-esc-lb-num-rf-bad64", Scenario{IDNo: "X", PhotoSize: 7, EscapeSlashes: true, LineBreaks: true, CodeAsNumber: true, ResultFirst: true, InvalidBase64: true}},
		{"o7-nr2-e500x1-v5m-esc", Scenario{IDNo: "X", PhotoSize: 7, NotReady: 2, HTTP500: 1, VideoSize: 5 << 20, EscapeSlashes: true}},
		{"O7_NR2_ESC", Scenario{IDNo: "X", PhotoSize: 7, NotReady: 2, EscapeSlashes: true}},
		{"o-c2008", Scenario{IDNo: "X", PhotoSize: 7, Code: "2008"}},
		{"o-c400504x2", Scenario{IDNo: "X", PhotoSize: 7, Script: []Step{{Code: "400504", Times: 2}}}},
		{"o-C400504X2-c66660021x1-nr1", Scenario{IDNo: "X", PhotoSize: 7, NotReady: 1,
			Script: []Step{{Code: "400504", Times: 2}, {Code: "66660021", Times: 1}}}},
		{"o-h429x2-c400506x1", Scenario{IDNo: "X", PhotoSize: 7,
			Script: []Step{{HTTPStatus: 429, Times: 2}, {Code: "400506", Times: 1}}}},
		{"o-thr5s", Scenario{IDNo: "X", PhotoSize: 7, ThrottleApp: 5 * time.Second}},
		{"o-thr500", Scenario{IDNo: "X", PhotoSize: 7, ThrottleApp: 500 * time.Millisecond}},
		// Not tokens: left alone.
		{"o-thr-thr0-thrx", base},
		{"o-c-cx2-c12x-c12x0-c1234567890-cab-c1xa", base},
		{"o-h429x0-h99x1-h600x1-h429x", base},
		{"o-nr-tr-e500x-f-h-lat-ed-p-v", base},
		{"o-h42-h600-hx", base},
		{"o-fab-nrx-p1g-v1t-ed0-p0", base},
		{"o-nr99999999999999999999", base},
		{"o-p99999999m-lat9999999999s", base},
		{"order-2026", base},
	}
	for _, tt := range tests {
		if got := ScenarioFromOrderNo(tt.orderNo, base); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ScenarioFromOrderNo(%q) = %+v, want %+v", tt.orderNo, got, tt.want)
		}
	}
}

// evState is how an evidence field appears in an answer.
type evState string

const (
	evAbsent evState = "absent"
	evEmpty  evState = "empty"
	evFull   evState = "full"
)

// outcome is what a client sees of one sync answer.
type outcome struct {
	status       int
	code         string // "" when the answer is not JSON
	cut          bool
	photo, video evState
}

func (a answer) outcome() outcome {
	o := outcome{status: a.status, cut: a.readErr != nil}
	if a.m == nil {
		return o
	}
	o.code = a.str("code")
	state := func(field string) evState {
		switch a.result(field) {
		case "<missing>":
			return evAbsent
		case "":
			return evEmpty
		}
		return evFull
	}
	o.photo, o.video = state(idasc.KindPhoto), state(idasc.KindVideo)
	return o
}

func TestScenarioSequences(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration // before the request
		getFile string
		want    outcome
	}
	var (
		decision = outcome{status: 200, code: "0", photo: evAbsent, video: evAbsent}
		full     = outcome{status: 200, code: "0", photo: evFull, video: evFull}
		empty    = outcome{status: 200, code: "0", photo: evEmpty, video: evEmpty}
		notReady = outcome{status: 200, code: idasc.CodeNotReady, photo: evAbsent, video: evAbsent}
		http500  = outcome{status: 500}
		cut      = outcome{status: 200, cut: true}
	)
	tests := []struct {
		name  string
		s     Scenario
		steps []step
	}{
		{"zero value", Scenario{}, []step{{0, "0", decision}, {time.Second, "1", full}}},
		{"evidence delay", Scenario{}, []step{{0, "1", empty}, {999 * time.Millisecond, "1", empty}, {time.Millisecond, "1", full}}},
		{"get_file", Scenario{}, []step{
			{0, "", decision}, {time.Second, "2", outcome{200, "0", false, evFull, evAbsent}},
			{0, "3", outcome{200, "0", false, evAbsent, evFull}}, {0, "4", decision}, {0, "1", full},
		}},
		{"failed code keeps evidence", Scenario{Code: "66660015"}, []step{
			{0, "0", outcome{200, "66660015", false, evAbsent, evAbsent}},
			{time.Second, "1", outcome{200, "66660015", false, evFull, evFull}},
		}},
		{"not ready", Scenario{NotReady: 2}, []step{{0, "0", notReady}, {0, "1", notReady}, {0, "0", decision}, {time.Second, "1", full}}},
		{"http 500", Scenario{HTTP500: 2}, []step{{0, "0", http500}, {0, "0", http500}, {0, "0", decision}}},
		{"truncated", Scenario{Truncated: 1}, []step{{0, "0", cut}, {0, "0", decision}}},
		{"truncated evidence", Scenario{HTTP500: 1, Truncated: 1, EvidenceDelay: time.Nanosecond}, []step{{0, "1", http500}, {time.Second, "1", cut}, {0, "1", full}}},
		{"stages in order", Scenario{HTTP500: 1, Truncated: 1, NotReady: 1}, []step{
			{0, "0", http500}, {0, "0", cut}, {0, "0", notReady}, {0, "0", decision},
		}},
		{"evidence http 500", Scenario{EvidenceHTTP500: 1}, []step{
			{0, "0", decision}, {0, "1", empty}, {time.Second, "0", decision}, {0, "1", http500}, {0, "1", full},
		}},
		{"evidence truncated", Scenario{EvidenceTruncated: 2}, []step{
			{0, "0", decision}, {time.Second, "1", cut}, {0, "3", cut}, {0, "1", full},
		}},
		{"http status", Scenario{HTTPStatus: 404}, []step{{0, "0", outcome{status: 404}}, {time.Second, "1", outcome{status: 404}}}},
		{"own evidence delay", Scenario{EvidenceDelay: 5 * time.Second}, []step{{0, "1", empty}, {4 * time.Second, "1", empty}, {time.Second, "1", full}}},
		{"evidence never", Scenario{EvidenceDelay: EvidenceNever}, []step{{0, "1", empty}, {30 * time.Minute, "1", empty}}},
		{"no photo", Scenario{NoPhoto: true}, []step{{time.Second, "1", outcome{200, "0", false, evAbsent, evEmpty}}, {time.Second, "1", outcome{200, "0", false, evAbsent, evFull}}}},
		{"no video", Scenario{NoVideo: true}, []step{{0, "1", outcome{200, "0", false, evEmpty, evAbsent}}, {time.Second, "3", decision}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			s := setup(t, Options{}, clk)
			tk := credentials(t, s)
			s.SetScenario(testApp, "ord1", tt.s)
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				if got := syncOnce(t, s, tk, "ord1", st.getFile).outcome(); got != st.want {
					t.Errorf("sync %d (get_file %q) = %+v, want %+v", i, st.getFile, got, st.want)
				}
			}
			recs := s.Requests()
			recs = recs[len(recs)-len(tt.steps):]
			for i, st := range tt.steps {
				r := recs[i]
				evidenceOK := st.want.cut || r.Photo == (st.want.photo == evFull) && r.Video == (st.want.video == evFull)
				if r.GetFile != st.getFile || r.HTTPStatus != st.want.status || r.Truncated != st.want.cut || !evidenceOK || !r.Signed {
					t.Errorf("Requests()[%d] = %+v, want one matching %+v", i, r, st.want)
				}
			}
		})
	}
}

func TestTruncatedEvidenceIsCutMidway(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{EvidenceDelay: -1}, nil)
	tk := credentials(t, s)
	s.SetScenario(testApp, "ord1", Scenario{EvidenceTruncated: 1, VideoSize: 3000})
	a := syncOnce(t, s, tk, "ord1", "1")
	if a.readErr == nil {
		t.Fatalf("truncated answer read to its end")
	}
	body := string(a.raw)
	_, video, ok := strings.Cut(body, `"video":"`)
	if !ok {
		t.Fatalf("truncated answer %.100q has no video", body)
	}
	if want := 4000 / 2; len(video) != want {
		t.Errorf("truncated answer carries %d characters of video, want %d", len(video), want)
	}
}

func TestOrderNumberScenario(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{DefaultScenario: Scenario{Code: "66660015"}}, nil)
	tk := credentials(t, s)
	for i, want := range []string{idasc.CodeNotReady, idasc.CodeNotReady, "66660015"} {
		if got := syncOnce(t, s, tk, "ord1-nr2", "0").str("code"); got != want {
			t.Errorf("sync %d of ord1-nr2 code = %s, want %s", i, got, want)
		}
	}
	// A scenario set explicitly wins over tokens and the default.
	s.SetScenario(testApp, "ord2-nr2", Scenario{})
	if got := syncOnce(t, s, tk, "ord2-nr2", "0").str("code"); got != "0" {
		t.Errorf("sync of ord2-nr2 with a scenario set code = %s, want 0", got)
	}
}

func TestJSONShapes(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{EvidenceDelay: -1}, nil)
	tk := credentials(t, s)
	query := func(orderNo string, sc Scenario) answer {
		s.SetScenario(testApp, orderNo, sc)
		return syncOnce(t, s, tk, orderNo, "1")
	}

	t.Run("default", func(t *testing.T) {
		a := query("plain", Scenario{})
		want := map[string]string{"code": "0", "msg": "请求成功", "app_id": testApp, "order_no": "plain"}
		for k, v := range want {
			if got := a.str(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		wantResult := map[string]string{
			"orderNo": "plain", "idNo": "110101199003071234", "name": "张三", "idType": "01",
			"liveRate": "100", "similarity": "95.0", "success": "false",
			"bizSeqNo": a.str("bizSeqNo"), "transactionTime": a.str("transactionTime"),
		}
		for k, v := range wantResult {
			if got := a.result(k); got != v {
				t.Errorf("result.%s = %q, want %q", k, got, v)
			}
		}
		if biz := a.str("bizSeqNo"); len(biz) != 32 || !digits(biz) {
			t.Errorf("bizSeqNo = %q, want 32 digits", biz)
		}
		if strings.Contains(string(a.raw), `\/`) {
			t.Errorf("answer escapes slashes without EscapeSlashes")
		}
		if !strings.HasPrefix(string(a.raw), `{"code":"0",`) {
			t.Errorf("answer starts %.20q, want code first as a string", a.raw)
		}
	})
	t.Run("failed", func(t *testing.T) {
		a := query("failed", Scenario{Code: "66660015", Msg: "比对不通过", IDNo: "1234567", Name: "李四"})
		want := map[string]string{"code": "66660015", "msg": "比对不通过"}
		for k, v := range want {
			if got := a.str(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if got := a.result("idNo"); got != "1234567" {
			t.Errorf("result.idNo = %q, want 1234567", got)
		}
		if got := a.result("name"); got != "李四" {
			t.Errorf("result.name = %q, want 李四", got)
		}
		if got := query("failed2", Scenario{Code: "66660015"}).str("msg"); got != msgFailed {
			t.Errorf("msg of a failed code = %q, want %q", got, msgFailed)
		}
	})
	t.Run("escape slashes", func(t *testing.T) {
		a := query("esc", Scenario{EscapeSlashes: true, VideoSize: 4 << 10})
		raw := string(a.raw)
		if !strings.Contains(raw, `\/`) || strings.Contains(strings.ReplaceAll(raw, `\/`, ""), "/") {
			t.Errorf("answer does not escape every slash")
		}
		checkEvidence(t, s, a, "esc")
	})
	t.Run("line breaks", func(t *testing.T) {
		a := query("lb", Scenario{LineBreaks: true, PhotoSize: 1000})
		_, photo, _ := strings.Cut(string(a.raw), `"photo":"`)
		photo, _, _ = strings.Cut(photo, `"`)
		lines := strings.Split(photo, `\r\n`)
		if want := (1336 + 75) / 76; len(lines) != want {
			t.Errorf("photo has %d lines, want %d", len(lines), want)
		}
		for i, l := range lines {
			if len(l) != 76 && i != len(lines)-1 || len(l) > 76 {
				t.Errorf("photo line %d has %d characters, want 76", i, len(l))
			}
		}
		checkEvidence(t, s, a, "lb")
	})
	t.Run("code as number", func(t *testing.T) {
		if a := query("num", Scenario{CodeAsNumber: true}); !strings.HasPrefix(string(a.raw), `{"code":0,`) {
			t.Errorf("answer starts %.20q, want a numeric code", a.raw)
		}
		a := query("num2", Scenario{CodeAsNumber: true, NotReady: 1})
		if !strings.HasPrefix(string(a.raw), `{"code":66660011,`) {
			t.Errorf("not-ready answer starts %.20q, want a numeric code", a.raw)
		}
	})
	t.Run("result first", func(t *testing.T) {
		a := query("rf", Scenario{ResultFirst: true})
		if !strings.HasPrefix(string(a.raw), `{"result":{`) {
			t.Errorf("answer starts %.20q, want result first", a.raw)
		}
		if got := a.str("code"); got != "0" {
			t.Errorf("code = %s, want 0", got)
		}
		checkEvidence(t, s, a, "rf")
	})
	t.Run("invalid base64", func(t *testing.T) {
		a := query("bad", Scenario{InvalidBase64: true})
		if _, err := decodeField(a, idasc.KindVideo); err == nil {
			t.Errorf("video decodes, want invalid base64")
		}
		if _, err := decodeField(a, idasc.KindPhoto); err != nil {
			t.Errorf("photo does not decode: %v", err)
		}
		a = query("bad2", Scenario{InvalidBase64: true, NoVideo: true})
		if _, err := decodeField(a, idasc.KindPhoto); err == nil {
			t.Errorf("photo without video decodes, want invalid base64")
		}
	})
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{}, nil)
	tk := credentials(t, s)
	s.SetScenario(testApp, "slow", Scenario{Latency: 10 * time.Millisecond})
	if got := syncOnce(t, s, tk, "slow", "0").str("code"); got != "0" {
		t.Errorf("sync with latency code = %s, want 0", got)
	}

	// A client that gives up frees the handler at once (an hour-long wait
	// would also hold up the server's Close at the end of the test).
	s.SetScenario(testApp, "stuck", Scenario{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tryGet(ctx, syncURL(s.URL, testApp, "stuck", tk, "0"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sync with an hour of latency: %v, want %v", err, context.DeadlineExceeded)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := s.Requests()
		if r := recs[len(recs)-1]; r.OrderNo == "stuck" {
			if r.HTTPStatus != 0 {
				t.Errorf("request abandoned by its client recorded with HTTP status %d, want 0", r.HTTPStatus)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler still waits after its client went away")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestScenarioFromOrderNoKeepsBase checks that script tokens never write
// into the base scenario's Script, which every order shares.
func TestScenarioFromOrderNoKeepsBase(t *testing.T) {
	t.Parallel()
	base := Scenario{Script: make([]Step, 1, 4)}
	base.Script[0] = Step{Code: "400504", Times: 1}
	a := ScenarioFromOrderNo("a-c400506x1", base)
	b := ScenarioFromOrderNo("b-c66660021x1", base)
	if len(base.Script) != 1 || base.Script[:2][1] != (Step{}) {
		t.Fatalf("base Script = %+v after parsing, want it unchanged", base.Script[:2])
	}
	if got := a.Script[1].Code; got != "400506" {
		t.Errorf("a.Script[1].Code = %q, want 400506", got)
	}
	if got := b.Script[1].Code; got != "66660021" {
		t.Errorf("b.Script[1].Code = %q, want 66660021", got)
	}
}
