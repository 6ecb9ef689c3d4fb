package vendorhttp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

func TestSendEachStopsAfterUnavailable(t *testing.T) {
	msgs := make([]providers.SMS, 5)
	for i := range msgs {
		msgs[i].ID = fmt.Sprint(i)
	}
	var calls atomic.Int32
	res := SendEach(context.Background(), "p", msgs, 1, func(_ context.Context, m providers.SMS) providers.SMSResult {
		calls.Add(1)
		switch m.ID {
		case "1":
			return providers.SMSResult{Err: &providers.Error{Kind: providers.Invalid}}
		case "2":
			return providers.SMSResult{Err: &providers.Error{Kind: providers.Indeterminate}}
		}
		return providers.SMSResult{ProviderID: "x" + m.ID}
	})
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3 (stop after the indeterminate one)", calls.Load())
	}
	want := []providers.Kind{0, providers.Invalid, providers.Indeterminate, providers.Unavailable, providers.Unavailable}
	for i, r := range res {
		if r.ID != msgs[i].ID {
			t.Errorf("result %d has ID %q", i, r.ID)
		}
		if k := kind(r); k != want[i] {
			t.Errorf("result %d: kind %v, want %v", i, k, want[i])
		}
	}
}

func kind(r providers.SMSResult) providers.Kind {
	if r.Err == nil {
		return 0
	}
	return r.Err.Kind
}

func TestDoClassifies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(503)
	}))
	defer srv.Close()
	req := func(path string) *http.Request {
		r, _ := http.NewRequest("GET", srv.URL+path+"?password=hunter2", nil)
		return r
	}
	resp, err := Do(context.Background(), srv.Client(), "p", req("/"))
	if err != nil || resp.Status != 503 {
		t.Fatalf("%v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Do(ctx, srv.Client(), "p", req("/hang")); err == nil || err.Kind != providers.Indeterminate || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("hang: %v", err)
	}
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := Do(done, srv.Client(), "p", req("/")); err == nil || err.Kind != providers.Unavailable {
		t.Errorf("cancelled: %v", err)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	r, _ := http.NewRequest("GET", dead.URL+"/?password=hunter2", nil)
	if _, err := Do(context.Background(), &http.Client{}, "p", r); err == nil || err.Kind != providers.Unavailable || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("refused: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	for s, want := range map[string]bool{"Hello @ £5 {ok} €": true, "Zoë": false, "ça": false, "é": true, "✓": false, "😀": false} {
		if IsGSM7(s) != want {
			t.Errorf("IsGSM7(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{"+32470123456": true, "32470123456": false, "+0470123456": false, "+1234": false, "+1234567890123456": false} {
		if ValidE164(s) != want {
			t.Errorf("ValidE164(%q) = %v", s, !want)
		}
	}
	if got := RedactPhone("+32470123456"); got != "+32******456" {
		t.Errorf("RedactPhone = %q", got)
	}
	for status, want := range map[int]providers.Kind{400: providers.Invalid, 404: providers.Invalid, 401: providers.Unavailable, 429: providers.Unavailable, 502: providers.Unavailable} {
		if ClassifyStatus(status) != want {
			t.Errorf("ClassifyStatus(%d) = %v", status, ClassifyStatus(status))
		}
	}
	if Host("https://api.twilio.com/x") != "api.twilio.com" {
		t.Error("Host")
	}
}
