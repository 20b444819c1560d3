package idasc

import (
	"fmt"
	"net/http"
	"slices"
)

// ClassRow is one row of the classification table: the provider codes
// that share a class, and what they mean.
type ClassRow struct {
	Class   Class
	Codes   []string
	Meaning string
}

// classRows is the classification of provider codes, the one place it is
// written down. A code not listed is ClassFailed.
// Access token, ticket, sync and evidence calls all use it.
var classRows = []ClassRow{
	{ClassNone, []string{CodeOK}, "verified, same person"},
	{ClassNotReady, []string{CodeNotReady}, "no result yet (also what an abandoned session answers forever)"},
	{ClassRejected, []string{CodeRejected, "400102", "66660001"}, "illegal request: signature, ticket or token refused"},
	{ClassThrottled, []string{CodeThrottled, "400506"}, "request rate too high"},
	{ClassRefused, []string{"400103", "400104", "66660002", "66660030"}, "the app may not call this API, the service has expired or is not enabled"},
	{ClassBadRequest, []string{"400502", "400601"}, "version or body refused"},
	{ClassTransient, []string{CodeProviderNetwork}, "network trouble on the provider's side"},
}

// codeClasses indexes classRows by code.
var codeClasses = func() map[string]Class {
	m := make(map[string]Class)
	for _, r := range classRows {
		for _, c := range r.Codes {
			if _, dup := m[c]; dup {
				panic(fmt.Sprintf("idasc: code %s sits in two rows of the classification table", c))
			}
			m[c] = r.Class
		}
	}
	return m
}()

// ClassTable returns a copy of the classification table, row by row. Codes
// it does not list are ClassFailed.
func ClassTable() []ClassRow {
	out := slices.Clone(classRows)
	for i := range out {
		out[i].Codes = slices.Clone(out[i].Codes)
	}
	return out
}

// CodeClass returns the class of a provider code: its row of ClassTable,
// or ClassFailed for any other code.
func CodeClass(code string) Class {
	if c, ok := codeClasses[code]; ok {
		return c
	}
	return ClassFailed
}

// StatusClass returns the class of a non-2xx HTTP answer: ClassThrottled for
// 429, ClassHTTP4xx for any other 4xx, ClassTransient for the rest (5xx
// above all).
func StatusClass(status int) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassThrottled
	case status >= 400 && status <= 499:
		return ClassHTTP4xx
	}
	return ClassTransient
}

// The categories of a failed record, so a partner
// can tell its user what to do without a code table of its own.
const (
	CategoryMismatch = "mismatch" // not the same person
	CategoryLiveness = "liveness" // not a live person, or the live check failed
	CategoryIdentity = "identity" // the name or id number is wrong, or the authority has no photo
	CategoryCapture  = "capture"  // photo, video or sound unusable
	CategorySession  = "session"  // the session ended early: time-out, too many tries, network
	CategorySystem   = "system"   // the provider or its authority source failed; the user may try again
	CategoryOther    = "other"    // any code not listed
)

// CategoryRow is one row of the category table: the codes of one category.
type CategoryRow struct {
	Category string
	Meaning  string
	Codes    []string
}

// categoryRows is the category table of failed records, its ranges
// written out code by code, the one place it is written down.
var categoryRows = []CategoryRow{
	{CategoryMismatch, "not the same person", []string{"66660004", "2011", "2015", "2016"}},
	{CategoryLiveness, "not a live person, or the live check failed", []string{
		"1002", "1003", "1005", "1301", "1302", "400604", "66660023", "66660025", "66660036"}},
	{CategoryIdentity, "the name or id number is wrong, or the authority has no photo", []string{
		"66660010", "66660015", "66660024", "2002", "2003", "2005", "2006", "2007", "66660039", "66660040"}},
	{CategoryCapture, "photo, video or sound unusable: light, distance, blur, several faces", []string{
		"1004",
		"1101", "1102", "1103", "1104",
		"1106", "1107", "1108", "1109",
		"1201", "1202", "1203", "1204", "1205", "1206", "1207", "1208", "1209", "1210",
		"1303", "2004", "2009", "2010", "2012", "2013", "2014",
		"66660005", "66660016", "66660026", "66660033", "66660035", "66660037", "66660038", "66660041", "66660042"}},
	{CategorySession, "the session ended early: time-out, too many tries, network", []string{
		"66660017", "66660018", CodeProviderNetwork, "66660022", "3001"}},
	{CategorySystem, "the provider or its authority source failed; the user may try again", []string{
		"1001", "1006", "1105", "2001", "2008", "2017"}},
}

// codeCategories indexes categoryRows by code.
var codeCategories = func() map[string]string {
	m := make(map[string]string)
	for _, r := range categoryRows {
		for _, c := range r.Codes {
			if _, dup := m[c]; dup {
				panic(fmt.Sprintf("idasc: code %s sits in two rows of the category table", c))
			}
			m[c] = r.Category
		}
	}
	return m
}()

// CategoryTable returns a copy of the category table, row by row, without
// the catch-all CategoryOther.
func CategoryTable() []CategoryRow {
	out := slices.Clone(categoryRows)
	for i := range out {
		out[i].Codes = slices.Clone(out[i].Codes)
	}
	return out
}

// Category returns the category of a failed record with this provider
// code: its row of CategoryTable, or CategoryOther for any other code.
func Category(code string) string {
	if c, ok := codeCategories[code]; ok {
		return c
	}
	return CategoryOther
}
