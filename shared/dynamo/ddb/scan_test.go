package ddb

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// FuzzScanItem checks the scanner reads an item as encoding/json through
// jsonItem (the decoder it replaced) does: the same attribute values when
// both succeed; the scanner refusing only what encoding/json refuses too,
// or a value whose members are not exactly one of DynamoDB's type names
// (which encoding/json matched case-insensitively, ignored when unknown
// and resolved by a fixed order when several, and skipped when a later
// duplicate attribute name replaced it: DynamoDB never sends them).
func FuzzScanItem(f *testing.F) {
	for _, seed := range []string{
		`{"pk":{"S":"KEY#k1"},"n":{"N":"42"},"b":{"B":"AAEC+v8="},"t":{"BOOL":true},"z":{"NULL":true},` +
			`"ss":{"SS":["x","y"]},"ns":{"NS":["1"]},"bs":{"BS":["AQ==","AgM="]},"m":{"M":{"in":{"L":[{"S":"é"},{"M":{}}]}}},"e":{"L":[]}}`,
		`{"s":{"S":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 \ud800 x"}}`,
		"{\"s\":{\"S\":\"\xff\xfe bad \xc3\"}}",
		` { "a" : { "N" : "1" } , "b":{"M":{}} } `,
		`{"a":{"S":"x","N":"1"}}`,
		`{"a":{}}`, `{}`, `null`, `{"a":{"S":1}}`, `{"a":{"B":"***"}}`, `{"a":{"X":"1"}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := &scanner{b: []byte(in)}
		got, err := s.item()
		if err == nil {
			err = s.end()
		}
		var ji jsonItem
		var want map[string]AttributeValue
		werr := json.Unmarshal([]byte(in), &ji)
		if werr == nil {
			want, werr = ji.attributes()
		}
		switch {
		case err == nil && werr == nil:
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: scanner %#v, encoding/json %#v", in, got, want)
			}
		case err == nil && werr != nil:
			t.Fatalf("%q: the scanner accepts what encoding/json refuses (%v): %#v", in, werr, got)
		case err != nil && werr == nil && !typeRefusal(err):
			t.Fatalf("%q: the scanner refuses (%v) what encoding/json reads: %#v", in, err, want)
		}
	})
}

// typeRefusal reports the scanner's refusal of a value whose members are
// not exactly one type name.
func typeRefusal(err error) bool {
	for _, m := range []string{"two types", "unknown attribute value type", "of no type"} {
		if strings.Contains(err.Error(), m) {
			return true
		}
	}
	return false
}

// The decoder the scanner replaced, kept as FuzzScanItem's reference.

// jsonValue is an AttributeValue as the protocol carries it.
type jsonValue struct {
	S    *string               `json:"S"`
	N    *string               `json:"N"`
	B    b64                   `json:"B"`
	BOOL *bool                 `json:"BOOL"`
	NULL *bool                 `json:"NULL"`
	M    map[string]*jsonValue `json:"M"`
	L    []*jsonValue          `json:"L"`
	SS   []string              `json:"SS"`
	NS   []string              `json:"NS"`
	BS   []b64                 `json:"BS"`
}

type jsonItem map[string]*jsonValue

func (v *jsonValue) attribute() (AttributeValue, error) {
	switch {
	case v == nil:
		return nil, fmt.Errorf("null attribute value")
	case v.S != nil:
		return &AttributeValueMemberS{Value: *v.S}, nil
	case v.N != nil:
		return &AttributeValueMemberN{Value: *v.N}, nil
	case v.B != nil:
		return &AttributeValueMemberB{Value: []byte(v.B)}, nil
	case v.BOOL != nil:
		return &AttributeValueMemberBOOL{Value: *v.BOOL}, nil
	case v.NULL != nil:
		return &AttributeValueMemberNULL{Value: *v.NULL}, nil
	case v.M != nil:
		m, err := jsonItem(v.M).attributes()
		return &AttributeValueMemberM{Value: m}, err
	case v.L != nil:
		l := make([]AttributeValue, len(v.L))
		for i, e := range v.L {
			a, err := e.attribute()
			if err != nil {
				return nil, err
			}
			l[i] = a
		}
		return &AttributeValueMemberL{Value: l}, nil
	case v.SS != nil:
		return &AttributeValueMemberSS{Value: v.SS}, nil
	case v.NS != nil:
		return &AttributeValueMemberNS{Value: v.NS}, nil
	case v.BS != nil:
		bs := make([][]byte, len(v.BS))
		for i, b := range v.BS {
			bs[i] = []byte(b)
		}
		return &AttributeValueMemberBS{Value: bs}, nil
	}
	return nil, fmt.Errorf("attribute value of no known type")
}

// attributes converts it; nil stays nil (no item).
func (it jsonItem) attributes() (map[string]AttributeValue, error) {
	if it == nil {
		return nil, nil
	}
	m := make(map[string]AttributeValue, len(it))
	for k, v := range it {
		a, err := v.attribute()
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		m[k] = a
	}
	return m, nil
}

// b64 is a binary value as the protocol carries it: a base64 string, and
// only that (encoding/json would also read a []byte from an array of
// numbers, which DynamoDB never sends and the scanner refuses).
type b64 []byte

func (b *b64) UnmarshalJSON(d []byte) error {
	if string(d) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(d, &s); err != nil {
		return err
	}
	v, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
