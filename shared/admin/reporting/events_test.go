package reporting

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/ledger"
)

func TestEventsErrorMapping(t *testing.T) {
	tests := []struct {
		err           error
		status        int
		param         string
		mentionsInput string
	}{
		{fmt.Errorf("%w: the cursor belongs to a different query", ledger.ErrBadCursor), 400, "cursor", "different query"},
		{fmt.Errorf("%w: end must be after start", ledger.ErrInvalidQuery), 400, "start", "end must be after start"},
		{errors.New("throttled"), 503, "", ""},
	}
	for _, tt := range tests {
		var ae *apierror.Error
		if err := eventsError(tt.err); !errors.As(err, &ae) || ae.Status != tt.status {
			t.Errorf("eventsError(%v) = %v", tt.err, err)
			continue
		}
		if tt.param != "" && (ae.Param != tt.param || !strings.Contains(ae.Message, tt.mentionsInput)) {
			t.Errorf("eventsError(%v) = %+v", tt.err, ae)
		}
	}
}
