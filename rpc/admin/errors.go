package admin

import (
	"errors"
	"net/http"

	"github.com/iapd/iapd/storage"
)

// kindCodes is the one table turning a storage.Kind into what the admin API
// answers: the HTTP status and the "kind" string of the error body.
var kindCodes = map[storage.Kind]struct {
	status int
	name   string
}{
	storage.Invalid:            {http.StatusBadRequest, "invalid"},
	storage.NotFound:           {http.StatusNotFound, "not_found"},
	storage.Exists:             {http.StatusConflict, "exists"},
	storage.Conflict:           {http.StatusConflict, "conflict"},
	storage.InsufficientCredit: {http.StatusConflict, "insufficient_credit"},
	storage.Forbidden:          {http.StatusForbidden, "forbidden"},
	storage.Unauthorized:       {http.StatusUnauthorized, "unauthorized"},
	storage.Unavailable:        {http.StatusServiceUnavailable, "unavailable"},
	storage.Internal:           {http.StatusInternalServerError, "internal"},
	storage.Other:              {http.StatusInternalServerError, "internal"},
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// classify returns the HTTP status, the kind name and a message that is
// safe to show for err: the Msg of a *storage.Error (its cause is for
// logs only), except for internal failures, which show "internal error".
func classify(err error) (status int, kind, msg string) {
	k := storage.KindOf(err)
	code, ok := kindCodes[k]
	if !ok {
		code = kindCodes[storage.Internal]
	}
	if code.status >= 500 && k != storage.Unavailable {
		return code.status, code.name, "internal error"
	}
	var se *storage.Error
	if errors.As(err, &se) && se.Msg != "" {
		return code.status, code.name, se.Msg
	}
	return code.status, code.name, k.String()
}
