// Package idasctest is a fake of the WeBank FaceID (人脸核身) server API
// over real HTTP, for tests and for the `facesync fake-idasc` simulator.
//
// It serves GET /api/oauth2/access_token, /api/oauth2/api_ticket and
// /api/server/sync as the provider does:
//
//   - Minting an access token leaves every older token of the app, and the
//     tickets made from it, valid for Options.Overlap (60 s by default);
//     after that, and after a token's or ticket's own lifetime, they are
//     refused with 400101. KillCredentials ends them all at once.
//   - /api/server/sync checks version 1.0.0, a nonce of 32 letters and
//     digits, an order number of 1 to 32 characters of A-Z a-z 0-9 _ -, and
//     the signature against the app's live SIGN tickets; anything else is
//     refused with 400101. An app_id missing from Options.Apps (or a wrong
//     secret) is answered with CodeUnknownApp (400104).
//   - Each order answers by its Scenario: decision code, 66660011 first,
//     HTTP 500s, bodies cut short, JSON quirks, evidence of any size and
//     format, ready only Options.EvidenceDelay (1 s) after the order's first
//     accepted query. Evidence is generated from the app, order and kind and
//     streamed through the base64 encoder as it is written, so a 200 MB
//     video costs no more memory than a small one; Evidence reports its
//     size and SHA-256 for checking what was stored.
//   - It records every request (Requests) and counts token mints, ticket
//     mints and requests signed with a ticket that had died.
//
// # Scenarios from the order number
//
// An order without a scenario set by SetScenario takes
// Options.DefaultScenario changed by the tokens found in its order number,
// so the simulator can be driven from the command line. Tokens are the
// parts of the order number between '-' and '_', matched regardless of
// case; parts that are not tokens are ignored. An order number holds at
// most 32 characters, so tokens are short: "o7-nr2-e500x1-v5m-esc" is an
// order answered HTTP 500 once, then 66660011 twice, then passed, with a
// 5 MiB video and slashes escaped.
//
//	token            meaning                                               Scenario field
//	f66660015        decision code 66660015 (any digits)                   Code
//	c2008            the same: decision code 2008 on every answer          Code
//	c400504x2        first 2 answers are code 400504 (any code, no result  Script
//	                 object); several such tokens run one after another
//	h429x2           first 2 requests get HTTP 429 (any 100-599)           Script
//	thr5s            the order's first request throttles its whole app     ThrottleApp
//	                 (400504 on every sync call) for 5 s (ms, s, m)
//	nr3              first 3 answers are 66660011 (no result yet)          NotReady
//	e500, e500x2     first 1 or 2 requests get HTTP 500                    HTTP500
//	tr2              first 2 answers cut mid-body                          Truncated
//	ev500, ev500x2   first 1 or 2 answers carrying evidence get HTTP 500   EvidenceHTTP500
//	evtr1            first answer carrying evidence cut mid-evidence       EvidenceTruncated
//	h404             every sync request gets HTTP 404 (any 100-599)        HTTPStatus
//	lat200, lat2s    wait 200 ms, 2 s before answering (ms, s, m)          Latency
//	ed3s, ed500ms    evidence ready 3 s, 500 ms after the first query      EvidenceDelay
//	noev             evidence never ready                                  EvidenceDelay = EvidenceNever
//	p100, p500k, p1m photo of 100 B, 500 KiB, 1 MiB                        PhotoSize
//	v200m            video of 200 MiB (same suffixes; sizes up to 4 GiB)   VideoSize
//	png              photo is a PNG rather than a JPEG                     PhotoFormat = FormatPNG
//	pbin             photo is neither JPEG nor PNG                         PhotoFormat = FormatBin
//	vbin             video is not an MP4                                   VideoFormat = FormatBin
//	nop, nov         no photo field, no video field                        NoPhoto, NoVideo
//	esc              JSON escapes "/" as "\/", inside base64 too           EscapeSlashes
//	lb               base64 wrapped every 76 characters with "\r\n"       LineBreaks
//	num              "code":0 rather than "code":"0"                       CodeAsNumber
//	rf               "result" before "code"                                ResultFirst
//	bad64            one invalid character mid-way in the video's base64   InvalidBase64
//
// The counters count the order's accepted sync requests, with or without
// get_file, in stages: first the scripted answers (c…x…, h…x…, in the
// order written), then the HTTP 500s, then the cut answers, then the
// 66660011s, then the decision (see Scenario). A scenario set with
// SetScenario wins over the tokens. So "o1-c400504x2-c66660021x1-nr1" is
// answered 400504 twice, 66660021 once, 66660011 once, then passed.
//
// # Throttling and credential scripts
//
// Throttle answers every sync request of an app with 400504 until a given
// time, whatever its order, and ThrottledCalls counts those requests, for
// tests of fleet-wide pacing. SetTokenScript and SetTicketScript script
// the answers to an app's access token and ticket requests the same way a
// Scenario's Script does for an order.
package idasctest
