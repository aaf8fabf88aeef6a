package kserve_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/kserve"
)

func causeOf(t *testing.T, err error) model.Cause {
	t.Helper()
	switch {
	case fault.IsPermanent(err):
		return model.CauseInput
	case errors.Is(err, model.ErrConfig):
		return model.CauseConfig
	case errors.Is(err, model.ErrTransient):
		return model.CauseTransient
	}
	t.Fatalf("%v is neither permanent nor transient", err)
	return 0
}

// Every HTTP status class through the client: only a refusal of the body itself
// quarantines the image; auth, not-found and precondition answers are the
// deployment's trouble; overload and outages are transient.
func TestErrorsClassifiedByCause(t *testing.T) {
	want := map[int]model.Cause{
		400: model.CauseInput, 413: model.CauseInput, 415: model.CauseInput, 422: model.CauseInput,
		401: model.CauseConfig, 403: model.CauseConfig, 404: model.CauseConfig, 405: model.CauseConfig,
		409: model.CauseConfig, 412: model.CauseConfig,
		408: model.CauseTransient, 425: model.CauseTransient, 429: model.CauseTransient,
		500: model.CauseTransient, 502: model.CauseTransient, 503: model.CauseTransient, 504: model.CauseTransient,
	}
	for code, cause := range want {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, http.StatusText(code), code)
			}))
			defer hs.Close()
			m, err := kserve.New(hs.URL+"/v2/models/faces", nil)
			if err != nil {
				t.Fatal(err)
			}
			m.WithBackoff(model.Backoff{Attempts: 1}) // the cause of one answer
			_, err = m.Predict(context.Background(), []model.Instance{{Content: "aGk="}}, model.Parameters{})
			if got := causeOf(t, err); got != cause {
				t.Errorf("%d: cause %d, want %d (%v)", code, got, cause, err)
			}
		})
	}
}

// A call whose context ends mid-request (a push timeout, a shutdown) is transient,
// never the image's fault; so is a refused connection.
func TestCancellationIsTransient(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "too late", http.StatusBadRequest)
	}))
	defer hs.Close()
	m, _ := kserve.New(hs.URL+"/v2/models/faces", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := m.Predict(ctx, []model.Instance{{Content: "aGk="}}, model.Parameters{})
	if got := causeOf(t, err); got != model.CauseTransient {
		t.Errorf("deadline mid-call: cause %d (%v)", got, err)
	}
	close(release)
	hs.Close()
	_, err = m.Predict(context.Background(), []model.Instance{{Content: "aGk="}}, model.Parameters{})
	if got := causeOf(t, err); got != model.CauseTransient {
		t.Errorf("refused connection: cause %d (%v)", got, err)
	}
}
