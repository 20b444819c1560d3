package idasc_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/facesync/facesync/worker/idasc"
)

// contractClasses is the published classification of provider answers,
// code by code, written out here so a change to the table in the code
// must be made twice.
var contractClasses = []struct {
	class idasc.Class
	codes []string
}{
	{idasc.ClassNone, []string{"0"}},
	{idasc.ClassNotReady, []string{"66660011"}},
	{idasc.ClassRejected, []string{"400101", "400102", "66660001"}},
	{idasc.ClassThrottled, []string{"400504", "400506"}},
	{idasc.ClassRefused, []string{"400103", "400104", "66660002", "66660030"}},
	{idasc.ClassBadRequest, []string{"400502", "400601"}},
	{idasc.ClassTransient, []string{"66660021"}},
}

// contractCategories is the published category table of failed records, its
// ranges written out.
var contractCategories = []struct {
	category string
	codes    []string
}{
	{"mismatch", []string{"66660004", "2011", "2015", "2016"}},
	{"liveness", []string{"1002", "1003", "1005", "1301", "1302", "400604", "66660023", "66660025", "66660036"}},
	{"identity", []string{"66660010", "66660015", "66660024", "2002", "2003", "2005", "2006", "2007", "66660039", "66660040"}},
	{"capture", []string{
		"1004", "1101", "1102", "1103", "1104", "1106", "1107", "1108", "1109",
		"1201", "1202", "1203", "1204", "1205", "1206", "1207", "1208", "1209", "1210",
		"1303", "2004", "2009", "2010", "2012", "2013", "2014",
		"66660005", "66660016", "66660026", "66660033", "66660035", "66660037", "66660038", "66660041", "66660042"}},
	{"session", []string{"66660017", "66660018", "66660021", "66660022", "3001"}},
	{"system", []string{"1001", "1006", "1105", "2001", "2008", "2017"}},
}

func TestClassTableFrozen(t *testing.T) {
	t.Parallel()
	want := map[string]idasc.Class{}
	for _, row := range contractClasses {
		for _, c := range row.codes {
			want[c] = row.class
		}
	}
	got := map[string]idasc.Class{}
	for _, row := range idasc.ClassTable() {
		if row.Meaning == "" {
			t.Errorf("ClassTable() row %v has no meaning", row.Class)
		}
		for _, c := range row.Codes {
			if prev, dup := got[c]; dup {
				t.Errorf("ClassTable() lists code %s under %v and %v, want one row", c, prev, row.Class)
			}
			got[c] = row.Class
		}
	}
	for c, class := range want {
		if got[c] != class {
			t.Errorf("ClassTable() has code %s under %v, want %v", c, got[c], class)
		}
		if cc := idasc.CodeClass(c); cc != class {
			t.Errorf("CodeClass(%q) = %v, want %v", c, cc, class)
		}
	}
	for c := range got {
		if _, ok := want[c]; !ok {
			t.Errorf("ClassTable() lists code %s, which the contract's table does not", c)
		}
	}
	for _, c := range []string{"1", "-1", "66660015", "2008", "400100", "9999999999", ""} {
		if cc := idasc.CodeClass(c); cc != idasc.ClassFailed {
			t.Errorf("CodeClass(%q) = %v, want failed (unlisted)", c, cc)
		}
	}
	// The copy is a copy.
	rows := idasc.ClassTable()
	rows[0].Codes[0] = "changed"
	if idasc.CodeClass("0") != idasc.ClassNone || idasc.ClassTable()[0].Codes[0] != "0" {
		t.Error("changing ClassTable()'s result changed the table")
	}
}

func TestCategoryTableFrozen(t *testing.T) {
	t.Parallel()
	want := map[string]string{}
	for _, row := range contractCategories {
		for _, c := range row.codes {
			if prev, dup := want[c]; dup {
				t.Fatalf("test table lists %s under %s and %s", c, prev, row.category)
			}
			want[c] = row.category
		}
	}
	got := map[string]string{}
	var names []string
	for _, row := range idasc.CategoryTable() {
		names = append(names, row.Category)
		if row.Meaning == "" {
			t.Errorf("CategoryTable() row %s has no meaning", row.Category)
		}
		for _, c := range row.Codes {
			if prev, dup := got[c]; dup {
				t.Errorf("CategoryTable() lists code %s under %s and %s, want one row", c, prev, row.Category)
			}
			got[c] = row.Category
		}
	}
	if wantNames := []string{"mismatch", "liveness", "identity", "capture", "session", "system"}; !slices.Equal(names, wantNames) {
		t.Errorf("CategoryTable() rows = %v, want %v", names, wantNames)
	}
	if len(got) != len(want) {
		t.Errorf("CategoryTable() lists %d codes, want %d", len(got), len(want))
	}
	for c, cat := range want {
		if got[c] != cat {
			t.Errorf("CategoryTable() has code %s under %q, want %q", c, got[c], cat)
		}
		if g := idasc.Category(c); g != cat {
			t.Errorf("Category(%q) = %q, want %q", c, g, cat)
		}
		// A category belongs to a failed record: every listed code is
		// failed, but for 66660021, which is failed only after a wait.
		wantClass := idasc.ClassFailed
		if c == idasc.CodeProviderNetwork {
			wantClass = idasc.ClassTransient
		}
		if cc := idasc.CodeClass(c); cc != wantClass {
			t.Errorf("CodeClass(%q) = %v, want %v for a code of category %s", c, cc, wantClass, cat)
		}
	}
	for _, c := range []string{"0", "1100", "1105x", "1211", "66660011", "400504", "12345", ""} {
		if g := idasc.Category(c); g != idasc.CategoryOther {
			t.Errorf("Category(%q) = %q, want other", c, g)
		}
	}
}

func TestStatusClass(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]idasc.Class{
		429: idasc.ClassThrottled,
		400: idasc.ClassHTTP4xx, 403: idasc.ClassHTTP4xx, 404: idasc.ClassHTTP4xx, 499: idasc.ClassHTTP4xx,
		500: idasc.ClassTransient, 502: idasc.ClassTransient, 503: idasc.ClassTransient, 302: idasc.ClassTransient,
	} {
		if got := idasc.StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %v, want %v", status, got, want)
		}
	}
}

// TestClassNames freezes the metric labels of the classes.
func TestClassNames(t *testing.T) {
	t.Parallel()
	want := map[idasc.Class]string{
		idasc.ClassNone: "none", idasc.ClassTransient: "transient", idasc.ClassNotReady: "not_ready",
		idasc.ClassRejected: "rejected", idasc.ClassHTTP4xx: "http_4xx", idasc.ClassFailed: "failed",
		idasc.ClassInvalid: "invalid", idasc.ClassThrottled: "throttled", idasc.ClassRefused: "refused",
		idasc.ClassBadRequest: "bad_request",
	}
	for c, name := range want {
		if got := c.String(); got != name {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, name)
		}
	}
}

func TestHasAnswerWithoutProvider(t *testing.T) {
	t.Parallel()
	if !idasc.HasAnswer(nil) {
		t.Error("HasAnswer(nil) = false, want true (code 0)")
	}
	if idasc.HasAnswer(errors.New("dial tcp: refused")) {
		t.Error("HasAnswer(a plain error) = true, want false")
	}
	if idasc.HasAnswer(&idasc.Error{Op: "sync", Class: idasc.ClassTransient}) {
		t.Error("HasAnswer(an *Error with neither code nor status) = true, want false")
	}
}
