package apikey

// RosterKey is a user's roster marker and the key it names: the one key
// a class roster gave the user (see the admin API's bulk enrolment).
type RosterKey struct {
	UserID string
	KeyID  string
	// Key is the key as stored, or nil when the marker names a key that does
	// not exist.
	Key *Key
}
