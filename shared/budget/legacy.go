package budget

import "time"

// LifetimeCounter is the stored name of an owner's lifetime spend counter.
//
// Deprecated: storage names belong to shared/dynamo (which turns an Owner
// and a Counter into an item key). It stays only for shared/admin and tests
// that still read counters by stored name; remove it with its last caller,
// and use LifetimeSpend.
const LifetimeCounter = "USAGE"

// MonthCounter is the stored name of an owner's monthly spend counter for
// the month of t.
//
// Deprecated: as LifetimeCounter; use MonthSpend.
func MonthCounter(t time.Time) string { return "SPEND#mo#" + MonthLabel(t) }
