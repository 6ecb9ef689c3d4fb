package fallback

import (
	"encoding/json"
	"testing"
)

// TestAnswers: each answer's refusal and outage for the params its route
// sends (PROTOCOL §4.1, §6–§9, §11); false where the error envelope is
// answered instead.
func TestAnswers(t *testing.T) {
	const msg = "the service is off"
	cases := []struct {
		name    string
		a       Answer
		params  string
		refused bool
		want    string // "" = the error envelope
	}{
		{"sms2 refused", SMSByResID, `{"messages":[{"res_id":7},{"number":"+32"}]}`, true,
			`[{"credit":0,"res_id":7,"state":"unregistered"},{"credit":0,"res_id":null,"state":"unregistered"}]`},
		{"sms2 outage", SMSByResID, `{"messages":[{"res_id":7}]}`, false, `[{"credit":0,"res_id":7,"state":"server_error"}]`},
		{"sms2 no messages", SMSByResID, `{}`, true, ""},
		{"sms3 skips numbers without uuid", SMSByUUID, `{"messages":[{"numbers":[{"uuid":"a"},{"number":"+32"}]}]}`, true,
			`[{"credit":0,"failure_reason":"the service is off","state":"unregistered","uuid":"a"}]`},
		{"sms3 outage", SMSByUUID, `{"messages":[{"numbers":[{"uuid":"a"}]}]}`, false,
			`[{"credit":0,"failure_reason":"the service is off","state":"server_error","uuid":"a"}]`},
		{"wizard refused", SMSAccount, `{}`, true, `{"state":"closed_feature"}`},
		{"wizard outage", SMSAccount, `{}`, false, `{"state":"unknown_error"}`},
		{"snailmail", Snailmail, `{"documents":[{"letter_id":3}]}`, false,
			`{"credit_error":false,"request":{"documents":[{"error":"UNKNOWN_ERROR","letter_id":3,"sent":false}],"options":{}},"request_code":200,"total_cost":0}`},
		{"snailmail no documents", Snailmail, `{"options":{}}`, true, ""},
		{"pa search", PASearch, `{}`, true, `[]`},
		{"pa search outage", PASearch, `{}`, false, ""},
		{"pa search_vat", PASearchVAT, `{}`, true, `false`},
		{"dnb search keeps data a list", DnBSearch, `{}`, true, `{"data":[],"error":"the service is off"}`},
		{"dnb enrich", DnBEnrich, `{}`, true, `{"error":"the service is off"}`},
		{"enrich", Enrich, `{"domains":{"a.be":["x"]}}`, true, `{"a.be":false}`},
		{"enrich outage", Enrich, `{"domains":{"a.be":["x"]}}`, false, ""},
		{"reveal", Reveal, `{}`, true, `{"reveal_data":[],"credit_error":false}`},
		{"balance", Balance, `{}`, true, `0`},
		{"balance outage", Balance, `{}`, false, ""},
		{"error envelope", Answer{}, `{}`, true, ""},
	}
	for _, c := range cases {
		got, ok := c.a.InBand(json.RawMessage(c.params), c.refused, msg)
		if c.want == "" {
			if ok {
				t.Errorf("%s: in-band %s, want the error envelope", c.name, got)
			}
			continue
		}
		if !ok || string(got) != c.want {
			t.Errorf("%s: %s %v, want %s", c.name, got, ok, c.want)
		}
	}
	if (Answer{}).Describe() != ErrorDoc || Balance.Describe() != "a balance of 0" {
		t.Errorf("describe: %q %q", Answer{}.Describe(), Balance.Describe())
	}
}
