package admin

import (
	"github.com/stipend/stipend/shared/admin/roster"
	"github.com/stipend/stipend/shared/dynamo"
)

// The store the admin function wires in implements every interface the
// admin API declares.
var (
	_ Store            = (*dynamo.Store)(nil)
	_ roster.Enrolment = (*dynamo.Store)(nil)
)
