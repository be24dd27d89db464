package ddb

import "testing"

func TestItemSize(t *testing.T) {
	tests := []struct {
		name string
		item map[string]AttributeValue
		want int
	}{
		{"empty", nil, 0},
		{"string", map[string]AttributeValue{"pk": &AttributeValueMemberS{Value: "KEY#abc"}}, 2 + 7},
		{"number", map[string]AttributeValue{"v": &AttributeValueMemberN{Value: "1234"}}, 1 + 3},
		{"string set", map[string]AttributeValue{"hold": &AttributeValueMemberSS{Value: []string{"ab", "cde"}}}, 4 + 5},
		{"map", map[string]AttributeValue{"m": &AttributeValueMemberM{Value: map[string]AttributeValue{"a": &AttributeValueMemberBOOL{Value: true}}}}, 1 + 3 + 1 + 2},
		{"list", map[string]AttributeValue{"l": &AttributeValueMemberL{Value: []AttributeValue{&AttributeValueMemberS{Value: "xy"}, &AttributeValueMemberNULL{Value: true}}}}, 1 + 3 + 2 + 2 + 1},
	}
	for _, tt := range tests {
		if got := ItemSize(tt.item); got != tt.want {
			t.Errorf("%s: ItemSize = %d, want %d", tt.name, got, tt.want)
		}
	}
}
